package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// SchedulerCursor returns the id of the last change a scheduler has
// considered. The apply that adds a scheduler starts its cursor at the
// newest change (see reconciler.schedulers); a scheduler without one,
// added before cursors were started at the apply, starts at the newest
// change now.
func (s *Store) SchedulerCursor(ctx context.Context, scheduler string) (int64, error) {
	var id int64
	err := s.db.QueryRowContext(ctx, `SELECT last_change FROM scheduler_cursors
		WHERE scheduler = $1`, scheduler).Scan(&id)
	if err == nil {
		return id, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("read cursor of scheduler %q: %w", scheduler, err)
	}
	var newest sql.NullInt64
	if err := s.db.QueryRowContext(ctx, `SELECT max(id) FROM changes`).Scan(&newest); err != nil {
		return 0, err
	}
	return newest.Int64, s.SetSchedulerCursor(ctx, scheduler, newest.Int64)
}

// SetSchedulerCursor records that a scheduler has considered every change
// up to id. The cursor never moves backwards.
func (s *Store) SetSchedulerCursor(ctx context.Context, scheduler string, id int64) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO scheduler_cursors (scheduler, last_change)
		VALUES ($1, $2) ON CONFLICT (scheduler) DO UPDATE SET last_change = excluded.last_change
		WHERE scheduler_cursors.last_change < excluded.last_change`, scheduler, id)
	if err != nil {
		return fmt.Errorf("advance cursor of scheduler %q: %w", scheduler, err)
	}
	return nil
}

// ChangesAfter lists up to limit changes with ids above after, oldest
// first.
func (s *Store) ChangesAfter(ctx context.Context, after int64, limit int) ([]Change, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+changeColumns+` FROM changes WHERE id > $1
		ORDER BY id LIMIT $2`,
		after, limit)
	if err != nil {
		return nil, fmt.Errorf("list changes after %d: %w", after, err)
	}
	defer rows.Close()
	var out []Change
	for rows.Next() {
		c, err := scanChange(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}
