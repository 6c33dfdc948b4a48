package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/regent-ci/regent/internal/build"
	"github.com/regent-ci/regent/internal/config"
)

// Claimed is a build created by a claim, with what the worker needs to run
// it.
type Claimed struct {
	Build        Build
	AttemptToken string
	Steps        []config.Step
	Env          map[string]string
	// SecretEnv names the secrets the worker resolves into the env of
	// every step of the builder.
	SecretEnv map[string]string
	// Clean is set for a retry, which must start from a clean workspace.
	Clean bool
}

// Claim gives up to max pending build requests that the session's worker
// may run to that worker, oldest first, each as a new running build with a
// fresh attempt token. It never hands out more builds than the worker's
// max_builds allows. A request whose builder's locks have no room is
// skipped and recorded as waiting for them (see the lock rules in
// locks.go); the locks of a claimed request are taken in the same
// transaction. On PostgreSQL concurrent claims skip each other's locked
// rows, so every request is claimed at most once.
func (s *Store) Claim(ctx context.Context, sess Session, master string, max int) ([]Claimed, error) {
	var out []Claimed
	err := s.tx(ctx, func(tx *sql.Tx) error {
		out = nil
		var running int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM builds WHERE session_id = $1
			AND state = $2`, sess.ID, build.StateRunning).Scan(&running); err != nil {
			return err
		}
		room := min(max, sess.MaxBuilds-running)
		if room <= 0 {
			return nil
		}
		cands, err := s.claimable(ctx, tx, sess.WorkerName)
		if err != nil {
			return err
		}
		now := micros(time.Now())
		lt, err := s.claimLocks(ctx, tx, cands, now)
		if err != nil {
			return err
		}
		for _, c := range cands {
			if len(out) == room {
				break
			}
			cl, ok, err := s.claimOne(ctx, tx, lt, c, sess, master, now)
			if err != nil {
				return err
			}
			if ok {
				out = append(out, cl)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("claim build requests for worker %q: %w", sess.WorkerName, err)
	}
	return out, nil
}

// claimLocks prepares the lock decisions of a claim: when any candidate's
// builder has locks, the rows of all those locks are locked up front, in
// name order, so that this claim never waits for another in a cycle. It
// returns nil when no candidate needs a lock.
func (s *Store) claimLocks(ctx context.Context, tx *sql.Tx, cands []candidate, now int64) (*lockTable, error) {
	var names []string
	for _, c := range cands {
		names = append(names, c.builder.Locks...)
	}
	if len(names) == 0 {
		return nil, nil
	}
	lt, err := s.lockTable(ctx, tx, now)
	if err != nil {
		return nil, err
	}
	if err := lt.lockRows(ctx, names); err != nil {
		return nil, err
	}
	return lt, lt.forgetStaleWaiters(ctx)
}

// claimOne claims one candidate if no other master holds its row and its
// builder's locks have room; otherwise it reports false, recording the
// request as waiting for the locks.
func (s *Store) claimOne(ctx context.Context, tx *sql.Tx, lt *lockTable, c candidate, sess Session,
	master string, now int64) (Claimed, bool, error) {
	locks := c.builder.Locks
	if len(locks) > 0 && !c.urgent && lt.moot(locks) {
		return Claimed{}, false, nil
	}
	if ok, err := s.lockRequest(ctx, tx, c.requestID); err != nil || !ok {
		return Claimed{}, false, err
	}
	if len(locks) > 0 {
		free, blocking, err := lt.free(ctx, locks, c.requestID, 0, 0, c.urgent)
		if err != nil {
			return Claimed{}, false, err
		}
		if !free {
			// A request that holds nothing waits in line for all its
			// locks; an urgent one, like a step, for the one it lacks
			// only, since the lines it would hold others back in are
			// those of builds that hold locks.
			wanted := locks
			if c.urgent {
				wanted = []string{blocking}
			}
			return Claimed{}, false, lt.want(ctx, wanted, blocking, c.requestID, 0)
		}
	}
	cl, err := startBuild(ctx, tx, c, sess, master, now)
	if err != nil {
		return Claimed{}, false, err
	}
	if len(locks) > 0 {
		if err := lt.hold(ctx, locks, c.requestID, cl.Build.ID, 0); err != nil {
			return Claimed{}, false, err
		}
	}
	return cl, true, nil
}

type candidate struct {
	requestID  int64
	builderID  int64
	builder    config.Builder
	properties map[string]string
	retryOf    sql.NullInt64
	// urgent is set for a request that a running build triggered: that
	// build holds its locks while it may wait for this one.
	urgent bool
}

// claimable finds the oldest pending requests, up to a bounded number,
// whose builder lists the worker, leaving out those triggered by a build
// that is cancelled or being cancelled: they are cancelled with it (see
// CancelOrphanedChildren), and must not start in the meantime. They are read without row locks: each is
// locked by lockRequest just before it is claimed, skipping any that
// another master holds, so that concurrent claims pass each other instead
// of waiting or all locking the same page of rows.
func (s *Store) claimable(ctx context.Context, tx *sql.Tx, worker string) ([]candidate, error) {
	rows, err := tx.QueryContext(ctx, `SELECT r.id, r.builder_id, b.spec, bs.properties, r.retry_of,
		COALESCE(p.state, '') FROM build_requests r JOIN builders b ON b.id = r.builder_id
		JOIN buildsets bs ON bs.id = r.buildset_id LEFT JOIN builds p ON p.id = bs.parent_build
		WHERE r.state = 'pending' AND b.retired_generation IS NULL
		AND (p.id IS NULL OR (p.cancel_requested = 0 AND COALESCE(p.result, '') <> $1))
		ORDER BY r.id LIMIT 200`, build.Cancelled)
	if err != nil {
		return nil, fmt.Errorf("find pending requests: %w", err)
	}
	defer rows.Close()
	var all []candidate
	for rows.Next() {
		var c candidate
		var spec, props, parent string
		if err := rows.Scan(&c.requestID, &c.builderID, &spec, &props, &c.retryOf, &parent); err != nil {
			return nil, err
		}
		c.urgent = parent == build.StateRunning
		if err := json.Unmarshal([]byte(spec), &c.builder); err != nil {
			return nil, fmt.Errorf("decode builder %d: %w", c.builderID, err)
		}
		if !slices.Contains(c.builder.Workers, worker) {
			continue
		}
		if err := json.Unmarshal([]byte(props), &c.properties); err != nil {
			return nil, fmt.Errorf("decode request %d properties: %w", c.requestID, err)
		}
		all = append(all, c)
	}
	return all, rows.Err()
}

// lockRequest locks a pending request's row for this transaction and
// reports false if another transaction holds it or it is no longer
// pending. SQLite transactions here take the write lock at BEGIN, so the
// rows read are already this transaction's alone.
func (s *Store) lockRequest(ctx context.Context, tx *sql.Tx, id int64) (bool, error) {
	if s.d.name != "postgres" {
		return true, nil
	}
	var got int64
	err := tx.QueryRowContext(ctx, `SELECT id FROM build_requests WHERE id = $1
		AND state = 'pending' FOR UPDATE SKIP LOCKED`, id).Scan(&got)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("lock request %d: %w", id, err)
	}
	return true, nil
}

func startBuild(ctx context.Context, tx *sql.Tx, c candidate, sess Session, master string, now int64) (Claimed, error) {
	var number int64
	err := tx.QueryRowContext(ctx, `UPDATE builders SET next_number = next_number + 1
		WHERE id = $1 RETURNING next_number - 1`, c.builderID).Scan(&number)
	if err != nil {
		return Claimed{}, fmt.Errorf("number build: %w", err)
	}
	props := map[string]string{}
	maps.Copy(props, c.builder.Properties)
	maps.Copy(props, c.properties)
	props["builder"] = c.builder.Name
	props["buildnumber"] = strconv.FormatInt(number, 10)
	props["worker"] = sess.WorkerName
	propsJSON, _ := json.Marshal(props)
	steps, _ := json.Marshal(c.builder.Steps)
	token := randomToken()

	var id int64
	err = tx.QueryRowContext(ctx, `INSERT INTO builds (builder_id, number, request_id, worker_id,
		session_id, attempt_token, state, properties, steps_spec, retry_of, master, created_at,
		started_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12) RETURNING id`,
		c.builderID, number, c.requestID, sess.WorkerID, sess.ID, token, build.StateRunning,
		string(propsJSON), string(steps), c.retryOf, master, now).Scan(&id)
	if err != nil {
		return Claimed{}, fmt.Errorf("insert build: %w", err)
	}
	_, err = tx.ExecContext(ctx, `UPDATE build_requests SET state = $1, claimed_at = $2,
		build_id = $3 WHERE id = $4`, RequestClaimed, now, id, c.requestID)
	if err != nil {
		return Claimed{}, fmt.Errorf("mark request %d claimed: %w", c.requestID, err)
	}
	worker := sess.WorkerName
	at := fromMicros(now)
	b := Build{ID: id, Builder: c.builder.Name, Number: number, RequestID: c.requestID,
		State: build.StateRunning, Properties: props, Worker: &worker, Master: master,
		CreatedAt: at, StartedAt: &at}
	if c.retryOf.Valid {
		b.RetryOf = &c.retryOf.Int64
	}
	return Claimed{Build: b, AttemptToken: token, Steps: c.builder.Steps, Env: c.builder.Env,
		SecretEnv: c.builder.SecretEnv, Clean: c.retryOf.Valid}, nil
}
