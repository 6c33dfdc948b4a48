package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/regent-ci/regent/internal/config"
)

// The durable state of schedulers beyond their change cursors, in
// scheduler_state: one row per scheduler and item. Item "" holds a timed
// scheduler's last run; "branch:NAME" a tree-stable timer waiting on
// branch NAME (next_run is its deadline, change_id the newest change it
// will build); "upstream" the position of a dependent scheduler.

// UpstreamItem is the item of scheduler_state holding a dependent
// scheduler's position among buildsets.
const UpstreamItem = "upstream"

// timerItem is the item of the tree-stable timer of branch.
func timerItem(branch string) string { return "branch:" + branch }

// SchedulerTimer is a tree-stable timer: the branch must stay quiet until
// Deadline, then the newest change, ChangeID, is built.
type SchedulerTimer struct {
	Branch   string    `json:"branch"`
	Deadline time.Time `json:"deadline"`
	ChangeID int64     `json:"change_id"`
}

// SchedulerTimers lists a scheduler's armed tree-stable timers, soonest
// first.
func (s *Store) SchedulerTimers(ctx context.Context, scheduler string) ([]SchedulerTimer, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT item, next_run, change_id FROM scheduler_state
		WHERE scheduler = $1 AND item LIKE 'branch:%' ORDER BY next_run, item`, scheduler)
	if err != nil {
		return nil, fmt.Errorf("read timers of scheduler %q: %w", scheduler, err)
	}
	defer rows.Close()
	var out []SchedulerTimer
	for rows.Next() {
		var item string
		var deadline, change int64
		if err := rows.Scan(&item, &deadline, &change); err != nil {
			return nil, fmt.Errorf("read timers of scheduler %q: %w", scheduler, err)
		}
		out = append(out, SchedulerTimer{Branch: item[len("branch:"):], Deadline: fromMicros(deadline),
			ChangeID: change})
	}
	return out, rows.Err()
}

// ArmTimers records, under fence f, that the scheduler has considered the
// changes up to cursor, and (re)arms a tree-stable timer for each branch
// that got a new change: a timer already armed for the branch takes the
// new deadline and change. Both happen in one transaction, so a new owner
// of the scheduler finds every change either still ahead of the cursor or
// waiting on a timer.
func (s *Store) ArmTimers(ctx context.Context, f Fence, scheduler string, timers []SchedulerTimer, cursor int64) error {
	err := s.tx(ctx, func(tx *sql.Tx) error {
		stamp, err := s.stampFence(ctx, tx, f)
		if err != nil {
			return err
		}
		now := micros(time.Now())
		for _, t := range timers {
			_, err := tx.ExecContext(ctx, `INSERT INTO scheduler_state (scheduler, item, next_run,
				change_id, updated_at, fence_service, fence_token, fenced_at)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
				ON CONFLICT (scheduler, item) DO UPDATE SET next_run = excluded.next_run,
				change_id = excluded.change_id, updated_at = excluded.updated_at,
				fence_service = excluded.fence_service, fence_token = excluded.fence_token,
				fenced_at = excluded.fenced_at
				WHERE scheduler_state.change_id IS NULL OR scheduler_state.change_id < excluded.change_id`,
				scheduler, timerItem(t.Branch), micros(t.Deadline), t.ChangeID, now,
				stamp.service, stamp.token, stamp.at)
			if err != nil {
				return fmt.Errorf("arm timer of branch %s: %w", t.Branch, err)
			}
		}
		return setCursor(ctx, tx, scheduler, cursor)
	})
	if err != nil {
		return fmt.Errorf("arm timers of scheduler %q: %w", scheduler, err)
	}
	return nil
}

// FireTimer creates, under fence f, the buildset of a tree-stable timer
// that expired and disarms it, in one transaction. If the timer was
// re-armed for a newer change meanwhile, nothing happens and fired is
// false.
func (s *Store) FireTimer(ctx context.Context, f Fence, scheduler string, t SchedulerTimer,
	in BuildsetInput) (bs Buildset, fired bool, err error) {
	var id int64
	err = s.tx(ctx, func(tx *sql.Tx) error {
		stamp, err := s.stampFence(ctx, tx, f)
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM scheduler_state WHERE scheduler = $1
			AND item = $2 AND change_id = $3`, scheduler, timerItem(t.Branch), t.ChangeID)
		if err != nil {
			return fmt.Errorf("disarm timer: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil
		}
		id, fired, err = s.createBuildset(ctx, tx, in, time.Now(), stamp)
		return err
	})
	if err != nil || !fired {
		return Buildset{}, false, wrapIf(err, "fire timer of scheduler %q on %s", scheduler, t.Branch)
	}
	bs, err = s.Buildset(ctx, id)
	return bs, true, err
}

// LastRun returns when a timed scheduler last ran, or the zero time when
// it never did.
func (s *Store) LastRun(ctx context.Context, scheduler string) (time.Time, error) {
	var last sql.NullInt64
	err := s.db.QueryRowContext(ctx, `SELECT last_run FROM scheduler_state WHERE scheduler = $1
		AND item = ''`, scheduler).Scan(&last)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("read last run of scheduler %q: %w", scheduler, err)
	}
	return fromMicros(last.Int64), nil
}

// RecordRun records, under fence f, a run of a timed scheduler at time at
// for the run that was due at due, creating the buildset in (when its
// Builders are not empty) in the same transaction. A run whose due time is
// not after the recorded last run was already made: nothing happens and
// ran is false. So however late or often a run is attempted, each due
// time is built at most once.
func (s *Store) RecordRun(ctx context.Context, f Fence, scheduler string, due, at time.Time,
	in BuildsetInput) (bs Buildset, ran bool, err error) {
	var id int64
	err = s.tx(ctx, func(tx *sql.Tx) error {
		stamp, err := s.stampFence(ctx, tx, f)
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO scheduler_state (scheduler, item, last_run,
			updated_at, fence_service, fence_token, fenced_at) VALUES ($1, '', $2, $2, $4, $5, $6)
			ON CONFLICT (scheduler, item) DO UPDATE
			SET last_run = excluded.last_run, updated_at = excluded.updated_at,
			fence_service = excluded.fence_service, fence_token = excluded.fence_token,
			fenced_at = excluded.fenced_at
			WHERE scheduler_state.last_run IS NULL OR scheduler_state.last_run < $3`,
			scheduler, micros(at), micros(due), stamp.service, stamp.token, stamp.at)
		if err != nil {
			return fmt.Errorf("record run: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil
		}
		ran = true
		if len(in.Builders) == 0 {
			return nil
		}
		id, _, err = s.createBuildset(ctx, tx, in, at, stamp)
		return err
	})
	if err != nil || !ran || id == 0 {
		return Buildset{}, ran, wrapIf(err, "record run of scheduler %q", scheduler)
	}
	bs, err = s.Buildset(ctx, id)
	return bs, true, err
}

// SchedulerPosition returns a scheduler's position in some sequence (the
// buildsets a dependent scheduler has decided about), or ok false when it
// has none yet.
func (s *Store) SchedulerPosition(ctx context.Context, scheduler, item string) (pos int64, ok bool, err error) {
	err = s.db.QueryRowContext(ctx, `SELECT position FROM scheduler_state WHERE scheduler = $1
		AND item = $2`, scheduler, item).Scan(&pos)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("read position of scheduler %q: %w", scheduler, err)
	}
	return pos, true, nil
}

// SetSchedulerPosition moves a scheduler's position forward to pos; it
// never moves backwards.
func (s *Store) SetSchedulerPosition(ctx context.Context, scheduler, item string, pos int64) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO scheduler_state (scheduler, item, position,
		updated_at) VALUES ($1, $2, $3, $4) ON CONFLICT (scheduler, item) DO UPDATE
		SET position = excluded.position, updated_at = excluded.updated_at
		WHERE scheduler_state.position < excluded.position`,
		scheduler, item, pos, micros(time.Now()))
	if err != nil {
		return fmt.Errorf("move position of scheduler %q: %w", scheduler, err)
	}
	return nil
}

// NewestBuildset returns the id of the newest buildset, 0 when there is
// none.
func (s *Store) NewestBuildset(ctx context.Context) (int64, error) {
	var id sql.NullInt64
	if err := s.db.QueryRowContext(ctx, `SELECT max(id) FROM buildsets`).Scan(&id); err != nil {
		return 0, fmt.Errorf("find newest buildset: %w", err)
	}
	return id.Int64, nil
}

// schedulers reconciles the schedulers of an apply and their durable
// state. A scheduler the generation adds, new or back from retirement, is
// a new scheduler and starts at the apply, in its transaction: its change
// cursor at the newest change, a timed scheduler's last run at the
// database's time, a dependent scheduler's position at the newest
// buildset. So it considers everything recorded after the apply, however
// late a master first runs it, and nothing recorded before, even while it
// was retired. A retired scheduler's state is dropped; one kept across
// generations keeps its own, and gets what it lacks when its kind
// changes. Schedulers cannot be renamed.
func (r *reconciler) schedulers(ctx context.Context, want []entityRow, nowSQL string, stamp fenceStamp) error {
	ch, err := r.reconcile(ctx, schedulersTable, want)
	if err != nil {
		return err
	}
	ended := slices.Clone(ch.added)
	for _, a := range ch.gone {
		ended = append(ended, a.name)
	}
	for chunk := range slices.Chunk(ended, batchIDs) {
		args := make([]any, len(chunk))
		for i, n := range chunk {
			args[i] = n
		}
		for _, table := range []string{"scheduler_cursors", "scheduler_state"} {
			_, err := r.tx.ExecContext(ctx, `DELETE FROM `+table+` WHERE scheduler IN (`+
				placeholders(1, len(chunk))+`)`, args...)
			if err != nil {
				return fmt.Errorf("drop the state of %d schedulers: %w", len(chunk), err)
			}
		}
	}

	if !ch.written {
		return nil
	}
	// Start the schedulers this generation wrote, where they have no
	// state yet. The WHERE clauses also keep SQLite from reading ON
	// CONFLICT as a join.
	starts := []string{
		`INSERT INTO scheduler_cursors (scheduler, last_change)
			SELECT name, (SELECT coalesce(max(id), 0) FROM changes) FROM schedulers
			WHERE updated_generation = $1 AND retired_generation IS NULL AND kind IN ($2, $3)
			ON CONFLICT (scheduler) DO NOTHING`,
		`INSERT INTO scheduler_state (scheduler, item, last_run, updated_at, fence_service,
			fence_token, fenced_at)
			SELECT name, '', ` + nowSQL + `, ` + nowSQL + `, CAST($4 AS TEXT), CAST($5 AS BIGINT),
			CAST($6 AS BIGINT) FROM schedulers
			WHERE updated_generation = $1 AND retired_generation IS NULL AND kind IN ($2, $3)
			ON CONFLICT (scheduler, item) DO NOTHING`,
		`INSERT INTO scheduler_state (scheduler, item, position, updated_at, fence_service,
			fence_token, fenced_at)
			SELECT name, CAST($2 AS TEXT), (SELECT coalesce(max(id), 0) FROM buildsets), ` + nowSQL + `,
			CAST($4 AS TEXT), CAST($5 AS BIGINT), CAST($6 AS BIGINT) FROM schedulers WHERE updated_generation = $1 AND retired_generation IS NULL AND kind = $3
			ON CONFLICT (scheduler, item) DO NOTHING`,
	}
	kinds := [][2]string{
		{config.SchedulerBranch, config.SchedulerAnyBranch},
		{config.SchedulerCron, config.SchedulerPeriodic},
		{UpstreamItem, config.SchedulerDependent},
	}
	for i, q := range starts {
		args := []any{r.gen, kinds[i][0], kinds[i][1]}
		if i > 0 {
			args = append(args, stamp.service, stamp.token, stamp.at)
		}
		if _, err := r.tx.ExecContext(ctx, q, args...); err != nil {
			return fmt.Errorf("start the schedulers of generation %d: %w", r.gen, err)
		}
	}
	return nil
}

// setCursor moves a scheduler's change cursor forward to id within tx.
func setCursor(ctx context.Context, tx *sql.Tx, scheduler string, id int64) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO scheduler_cursors (scheduler, last_change)
		VALUES ($1, $2) ON CONFLICT (scheduler) DO UPDATE SET last_change = excluded.last_change
		WHERE scheduler_cursors.last_change < excluded.last_change`, scheduler, id)
	if err != nil {
		return fmt.Errorf("advance cursor of scheduler %q: %w", scheduler, err)
	}
	return nil
}

// wrapIf wraps a non-nil err with what was being done.
func wrapIf(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf(format+": %w", append(args, err)...)
}
