package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/regent-ci/regent/internal/build"
	"github.com/regent-ci/regent/internal/config"
)

// Locks limit how many builds, or steps, hold a name at once across the
// whole cluster. A builder's locks are taken when one of its requests is
// claimed and held until the build ends; a step's locks are taken before
// the step runs and given back when it ends. Both live in lock_holders,
// so a lock is released in the same transaction that finishes, cancels or
// loses the build holding it, whichever master runs that transaction.
//
// Fairness: a request that could run but for a full lock is recorded in
// lock_waiters. A lock is granted only while the holders plus the live
// waiters of earlier build requests leave room, so a later request, of any
// builder, never overtakes a waiting earlier one. A waiter is live while
// something still tries for it: a claim by an idle compatible worker, or
// the worker retrying a step's locks, refreshes it within a second or so;
// one not refreshed for lockWaiterTTL (its worker went away, its request
// was cancelled) no longer holds anyone back.
//
// On PostgreSQL, claims and step acquisitions that touch a lock first lock
// its row in the locks table, always in name order, so two masters never
// grant the last place twice and never deadlock on each other.

// lockWaiterTTL is how long a waiter counts without being refreshed.
const lockWaiterTTL = 5 * time.Second

// LockHolder is one holder of a lock.
type LockHolder struct {
	Lock    string `json:"lock"`
	BuildID int64  `json:"build"`
	// Step is the step holding the lock, or 0 when the build holds it
	// for its whole run.
	Step       int       `json:"step"`
	AcquiredAt time.Time `json:"acquired_at"`
}

// lockLimits caches each configuration's lock limits by content hash: the
// same content always declares the same locks, whatever the database.
var lockLimits struct {
	sync.Mutex
	byHash map[string]map[string]int
}

// limits returns the max_holders of every lock of the active generation.
func limits(ctx context.Context, tx *sql.Tx) (map[string]int, error) {
	var hash string
	err := tx.QueryRowContext(ctx, `SELECT content_hash FROM generations
		ORDER BY number DESC LIMIT 1`).Scan(&hash)
	if errors.Is(err, sql.ErrNoRows) {
		return map[string]int{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read active generation: %w", err)
	}
	lockLimits.Lock()
	m, ok := lockLimits.byHash[hash]
	lockLimits.Unlock()
	if ok {
		return m, nil
	}

	var stateJSON string
	err = tx.QueryRowContext(ctx, `SELECT state FROM generations WHERE content_hash = $1
		ORDER BY number DESC LIMIT 1`, hash).Scan(&stateJSON)
	if err != nil {
		return nil, fmt.Errorf("read active generation: %w", err)
	}
	var st struct {
		Locks []config.Lock `json:"locks"`
	}
	if err := json.Unmarshal([]byte(stateJSON), &st); err != nil {
		return nil, fmt.Errorf("decode locks of the active generation: %w", err)
	}
	m = make(map[string]int, len(st.Locks))
	for _, l := range st.Locks {
		m[l.Name] = l.MaxHolders
	}
	lockLimits.Lock()
	if lockLimits.byHash == nil || len(lockLimits.byHash) > 64 {
		lockLimits.byHash = map[string]map[string]int{}
	}
	lockLimits.byHash[hash] = m
	lockLimits.Unlock()
	return m, nil
}

// lockTable decides about locks within one transaction.
type lockTable struct {
	s      *Store
	tx     *sql.Tx
	limits map[string]int
	now    int64
	rows   map[string]bool // lock rows locked by this transaction
	// blocked counts, per lock, the requests this transaction found it
	// had no room for and recorded as waiting.
	blocked map[string]int
}

func (s *Store) lockTable(ctx context.Context, tx *sql.Tx, now int64) (*lockTable, error) {
	lim, err := limits(ctx, tx)
	if err != nil {
		return nil, err
	}
	return &lockTable{s: s, tx: tx, limits: lim, now: now, rows: map[string]bool{},
		blocked: map[string]int{}}, nil
}

// max returns a lock's limit; a lock the configuration no longer declares
// is exclusive.
func (lt *lockTable) max(name string) int {
	if n, ok := lt.limits[name]; ok && n > 0 {
		return n
	}
	return 1
}

// lockRows serialises this transaction with every other one deciding
// about the named locks, on PostgreSQL. Rows are locked in name order, and
// every caller locks all the rows it will need before deciding, so that
// transactions never wait on each other in a cycle. SQLite transactions
// hold the database's write lock from BEGIN and need nothing more.
func (lt *lockTable) lockRows(ctx context.Context, names []string) error {
	if lt.s.d.name != "postgres" {
		return nil
	}
	var todo []string
	for _, n := range names {
		if !lt.rows[n] {
			todo = append(todo, n)
		}
	}
	slices.Sort(todo)
	todo = slices.Compact(todo)
	for _, n := range todo {
		if _, err := lt.tx.ExecContext(ctx, `INSERT INTO locks (name) VALUES ($1)
			ON CONFLICT (name) DO NOTHING`, n); err != nil {
			return fmt.Errorf("create lock %q: %w", n, err)
		}
		var got string
		err := lt.tx.QueryRowContext(ctx, `SELECT name FROM locks WHERE name = $1 FOR UPDATE`,
			n).Scan(&got)
		if err != nil {
			return fmt.Errorf("lock the row of lock %q: %w", n, err)
		}
		lt.rows[n] = true
	}
	return nil
}

// free reports whether every named lock has room for the build request
// request (or, for step > 0, that step of its build) ahead of the later
// waiters, and if not, the first lock that has none. Locks the build holds
// already, for its whole run or for this step (an acquire repeated after
// a lost answer), count as free. The rows must be locked.
//
// Waiters that hold nothing must never hold back one whose build, or
// whose parent build, holds locks already: the waiter might want one of
// those, and would hold back the very build that must end first, a
// deadlock. So a step waits behind the earlier steps waiting for a lock,
// but never behind build requests that wait to start; and an urgent
// request, one a running build triggered (and may wait for), waits behind
// those steps and the earlier urgent requests only. The configuration
// refuses the waits that can close a circle through what builds hold (see
// checkLockOrder in internal/config).
func (lt *lockTable) free(ctx context.Context, names []string, request, buildID int64,
	step int, urgent bool) (bool, string, error) {
	for _, n := range names {
		if buildID != 0 {
			var own int
			err := lt.tx.QueryRowContext(ctx, `SELECT count(*) FROM lock_holders
				WHERE lock_name = $1 AND build_id = $2 AND step IN (0, $3)`, n, buildID, step).Scan(&own)
			if err != nil {
				return false, "", fmt.Errorf("count holders of lock %q: %w", n, err)
			}
			if own > 0 {
				continue
			}
		}
		var holders, ahead int
		err := lt.tx.QueryRowContext(ctx, `SELECT count(*) FROM lock_holders WHERE lock_name = $1`,
			n).Scan(&holders)
		if err != nil {
			return false, "", fmt.Errorf("count holders of lock %q: %w", n, err)
		}
		err = lt.tx.QueryRowContext(ctx, `SELECT count(*) FROM lock_waiters w
			WHERE w.lock_name = $1 AND w.request_id < $2 AND w.last_wanted >= $3
			AND ((w.step = 0 AND $6 = 0 AND EXISTS (SELECT 1 FROM build_requests r
					WHERE r.id = w.request_id AND r.state = $4)
				AND ($7 = 0 OR EXISTS (SELECT 1 FROM build_requests r
					JOIN buildsets bs ON bs.id = r.buildset_id JOIN builds p ON p.id = bs.parent_build
					WHERE r.id = w.request_id AND p.state = $5)))
				OR (w.step > 0 AND EXISTS (SELECT 1 FROM builds b
					WHERE b.request_id = w.request_id AND b.state = $5)))`,
			n, request, lt.now-lockWaiterTTL.Microseconds(), RequestPending,
			build.StateRunning, step, boolInt(urgent)).Scan(&ahead)
		if err != nil {
			return false, "", fmt.Errorf("count waiters of lock %q: %w", n, err)
		}
		if holders+ahead >= lt.max(n) {
			return false, n, nil
		}
	}
	return true, "", nil
}

// moot reports whether a claim need not even look at a request needing
// the named locks: one of them already blocked as many earlier requests,
// recorded as waiting, as it has places, so those requests hold every
// place that could free up before this one.
func (lt *lockTable) moot(names []string) bool {
	for _, n := range names {
		if lt.blocked[n] >= lt.max(n) {
			return true
		}
	}
	return false
}

// want records, or refreshes, that the request (or a step of its build)
// waits for the named locks, blocked by the lock named blocking.
func (lt *lockTable) want(ctx context.Context, names []string, blocking string, request int64,
	step int) error {
	lt.blocked[blocking]++
	for _, n := range names {
		_, err := lt.tx.ExecContext(ctx, `INSERT INTO lock_waiters (lock_name, request_id, step,
			since, last_wanted) VALUES ($1, $2, $3, $4, $4)
			ON CONFLICT (lock_name, request_id, step) DO UPDATE SET last_wanted = excluded.last_wanted`,
			n, request, step, lt.now)
		if err != nil {
			return fmt.Errorf("record a waiter for lock %q: %w", n, err)
		}
	}
	return nil
}

// hold makes the build, or one of its steps, a holder of the named locks
// and ends its wait for them.
func (lt *lockTable) hold(ctx context.Context, names []string, request, buildID int64, step int) error {
	for _, n := range names {
		_, err := lt.tx.ExecContext(ctx, `INSERT INTO lock_holders (lock_name, build_id, step,
			acquired_at) VALUES ($1, $2, $3, $4) ON CONFLICT (lock_name, build_id, step) DO NOTHING`,
			n, buildID, step, lt.now)
		if err != nil {
			return fmt.Errorf("hold lock %q: %w", n, err)
		}
	}
	_, err := lt.tx.ExecContext(ctx, `DELETE FROM lock_waiters WHERE request_id = $1 AND step = $2`,
		request, step)
	if err != nil {
		return fmt.Errorf("end the wait of request %d: %w", request, err)
	}
	return nil
}

// forgetStaleWaiters deletes waiters nobody tried for in a long while, so
// that lock_waiters holds only recent history.
func (lt *lockTable) forgetStaleWaiters(ctx context.Context) error {
	_, err := lt.tx.ExecContext(ctx, `DELETE FROM lock_waiters WHERE last_wanted < $1`,
		lt.now-(20*lockWaiterTTL).Microseconds())
	return err
}

// releaseLocks gives back the locks a build holds: those of one step, or
// all of them (and ends the waits of its request) when step is negative.
// It reports whether any lock was released.
func releaseLocks(ctx context.Context, tx *sql.Tx, buildID int64, step int) (bool, error) {
	q, args := `DELETE FROM lock_holders WHERE build_id = $1`, []any{buildID}
	if step >= 0 {
		q, args = q+` AND step = $2`, append(args, step)
	}
	res, err := tx.ExecContext(ctx, q, args...)
	if err != nil {
		return false, fmt.Errorf("release locks of build %d: %w", buildID, err)
	}
	if step < 0 {
		_, err = tx.ExecContext(ctx, `DELETE FROM lock_waiters WHERE request_id =
			(SELECT request_id FROM builds WHERE id = $1)`, buildID)
		if err != nil {
			return false, fmt.Errorf("end the waits of build %d: %w", buildID, err)
		}
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

// StepLocks is the answer to a step's request for its locks.
type StepLocks struct {
	// Acquired is set once the step holds every lock it names.
	Acquired bool
	// Waiting names a lock that has no room yet.
	Waiting string
}

// AcquireStepLocks takes the locks step number of a running build names,
// all or none, for the attempt token. When a lock has no room the step is
// recorded as waiting, in the order of its build request, and the caller
// asks again a little later. A step that names no locks, or holds them
// already, gets them at once.
func (s *Store) AcquireStepLocks(ctx context.Context, buildID int64, token string,
	step int) (StepLocks, error) {
	var out StepLocks
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if err := s.attempt(ctx, tx, buildID, token); err != nil {
			return err
		}
		var request int64
		var spec string
		err := tx.QueryRowContext(ctx, `SELECT request_id, steps_spec FROM builds WHERE id = $1`,
			buildID).Scan(&request, &spec)
		if err != nil {
			return fmt.Errorf("look up build %d: %w", buildID, err)
		}
		var steps []config.Step
		if err := json.Unmarshal([]byte(spec), &steps); err != nil {
			return fmt.Errorf("decode steps of build %d: %w", buildID, err)
		}
		if step < 1 || step > len(steps) {
			return fmt.Errorf("build %d has no step %d: %w", buildID, step, ErrNotFound)
		}
		names := steps[step-1].Locks
		if len(names) == 0 {
			out.Acquired = true
			return nil
		}
		lt, err := s.lockTable(ctx, tx, micros(time.Now()))
		if err != nil {
			return err
		}
		if err := lt.lockRows(ctx, names); err != nil {
			return err
		}
		ok, blocking, err := lt.free(ctx, names, request, buildID, step, true)
		if err != nil {
			return err
		}
		if !ok {
			// The step waits for the lock with no room only: waiting for
			// the others too would hold them back from later steps
			// while this one can take none of them, which can close a
			// circle of waits the configuration's lock order does not show.
			out.Waiting = blocking
			return lt.want(ctx, []string{blocking}, blocking, request, step)
		}
		out.Acquired = true
		return lt.hold(ctx, names, request, buildID, step)
	})
	if err != nil {
		return StepLocks{}, fmt.Errorf("acquire locks of step %d of build %d: %w", step, buildID, err)
	}
	return out, nil
}

// ReleaseStepLocks gives back the locks a step of a running build holds.
// Releasing locks not held is harmless, so a worker may repeat it.
func (s *Store) ReleaseStepLocks(ctx context.Context, buildID int64, token string, step int) error {
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if err := s.attempt(ctx, tx, buildID, token); err != nil {
			if errors.Is(err, ErrStaleAttempt) {
				return nil // the end of the build released them
			}
			return err
		}
		released, err := releaseLocks(ctx, tx, buildID, step)
		if err != nil || !released {
			return err
		}
		return s.notify(ctx, tx, TopicRequest)
	})
	if err != nil {
		return fmt.Errorf("release locks of step %d of build %d: %w", step, buildID, err)
	}
	return nil
}

// LockHolders lists who holds each lock, by lock name and then build.
func (s *Store) LockHolders(ctx context.Context) ([]LockHolder, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT lock_name, build_id, step, acquired_at
		FROM lock_holders ORDER BY lock_name, build_id, step`)
	if err != nil {
		return nil, fmt.Errorf("list lock holders: %w", err)
	}
	defer rows.Close()
	var out []LockHolder
	for rows.Next() {
		var h LockHolder
		var at int64
		if err := rows.Scan(&h.Lock, &h.BuildID, &h.Step, &at); err != nil {
			return nil, err
		}
		h.AcquiredAt = fromMicros(at)
		out = append(out, h)
	}
	return out, rows.Err()
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
