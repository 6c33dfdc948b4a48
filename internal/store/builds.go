package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/regent-ci/regent/internal/build"
	"github.com/regent-ci/regent/internal/config"
)

// attempt checks that token is the current attempt of a running build and
// locks the build row for the rest of the transaction.
func (s *Store) attempt(ctx context.Context, tx *sql.Tx, buildID int64, token string) error {
	lock := ""
	if s.d.name == "postgres" {
		lock = " FOR UPDATE"
	}
	var cur, state string
	err := tx.QueryRowContext(ctx, `SELECT attempt_token, state FROM builds WHERE id = $1`+lock,
		buildID).Scan(&cur, &state)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("build %d: %w", buildID, ErrNotFound)
	}
	if err != nil {
		return err
	}
	if cur != token || state != build.StateRunning {
		return fmt.Errorf("build %d: %w", buildID, ErrStaleAttempt)
	}
	return nil
}

// StartStep records that a step of a running build began.
func (s *Store) StartStep(ctx context.Context, buildID int64, token string, number int, name string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if err := s.attempt(ctx, tx, buildID, token); err != nil {
			return err
		}
		now := micros(time.Now())
		_, err := tx.ExecContext(ctx, `INSERT INTO steps (build_id, number, name, state, started_at)
			VALUES ($1, $2, $3, $4, $5) ON CONFLICT (build_id, number) DO NOTHING`,
			buildID, number, name, build.StateRunning, now)
		return err
	})
}

// FinishStep records a step's result. It refuses with ErrConflict while
// fewer than logSize bytes of the step's log are stored, so a step is never
// shown finished with part of its output missing.
func (s *Store) FinishStep(ctx context.Context, buildID int64, token string, number int,
	result, reason string, props map[string]string, logSize int64) error {
	if !build.Valid(result) {
		return fmt.Errorf("unknown result %q: %w", result, ErrConflict)
	}
	return s.tx(ctx, func(tx *sql.Tx) error {
		if err := s.attempt(ctx, tx, buildID, token); err != nil {
			return err
		}
		var stored int64
		err := tx.QueryRowContext(ctx, `SELECT log_size FROM steps WHERE build_id = $1
			AND number = $2`, buildID, number).Scan(&stored)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("step %d of build %d was never started: %w", number, buildID, ErrNotFound)
		}
		if err != nil {
			return err
		}
		if stored < logSize {
			return fmt.Errorf("step %d of build %d holds %d of %d log bytes: %w",
				number, buildID, stored, logSize, ErrConflict)
		}
		_, err = tx.ExecContext(ctx, `UPDATE steps SET state = $1, result = $2, reason = $3,
			finished_at = $4 WHERE build_id = $5 AND number = $6 AND state <> $1`,
			build.StateFinished, result, reason, micros(time.Now()), buildID, number)
		if err != nil {
			return err
		}
		// The worker gives a step's locks back as soon as it ends; this
		// covers a release whose request was lost.
		released, err := releaseLocks(ctx, tx, buildID, number)
		if err != nil {
			return err
		}
		if released {
			if err := s.notify(ctx, tx, TopicRequest); err != nil {
				return err
			}
		}
		if len(props) == 0 {
			return nil
		}
		return mergeProperties(ctx, tx, buildID, props)
	})
}

func mergeProperties(ctx context.Context, tx *sql.Tx, buildID int64, props map[string]string) error {
	var cur string
	if err := tx.QueryRowContext(ctx, `SELECT properties FROM builds WHERE id = $1`, buildID).Scan(&cur); err != nil {
		return err
	}
	m := map[string]string{}
	if err := json.Unmarshal([]byte(cur), &m); err != nil {
		return err
	}
	for k, v := range props {
		m[k] = v
	}
	b, _ := json.Marshal(m)
	_, err := tx.ExecContext(ctx, `UPDATE builds SET properties = $1 WHERE id = $2`, string(b), buildID)
	return err
}

// FinishBuild records a build's result and completes its request. A build
// whose cancellation was asked for ends cancelled whatever the worker
// reports, unless it succeeded before the order reached it.
func (s *Store) FinishBuild(ctx context.Context, buildID int64, token, result, reason string) error {
	if !build.Valid(result) {
		return fmt.Errorf("unknown result %q: %w", result, ErrConflict)
	}
	return s.tx(ctx, func(tx *sql.Tx) error {
		if err := s.attempt(ctx, tx, buildID, token); err != nil {
			if errors.Is(err, ErrStaleAttempt) && finishedBy(ctx, tx, buildID, token, result) {
				return nil // a resent finish whose first answer was lost
			}
			return err
		}
		var cancel int
		var cancelReason string
		err := tx.QueryRowContext(ctx, `SELECT cancel_requested, reason FROM builds WHERE id = $1`,
			buildID).Scan(&cancel, &cancelReason)
		if err != nil {
			return err
		}
		if cancel == 1 && result != build.Success {
			result, reason = build.Cancelled, cancelReason
		}
		var held int
		err = tx.QueryRowContext(ctx, `SELECT count(*) FROM lock_holders WHERE build_id = $1`,
			buildID).Scan(&held)
		if err != nil {
			return fmt.Errorf("count locks of build %d: %w", buildID, err)
		}
		if err := finishBuild(ctx, tx, buildID, result, reason, micros(time.Now())); err != nil {
			return err
		}
		if held > 0 {
			// Requests waiting for these locks may be claimed now, through
			// any master.
			return s.notify(ctx, tx, TopicRequest)
		}
		return nil
	})
}

// finishedBy reports whether the build already finished through this
// attempt, which makes a repeated finish harmless.
func finishedBy(ctx context.Context, tx *sql.Tx, buildID int64, token, result string) bool {
	var cur, state string
	var res sql.NullString
	err := tx.QueryRowContext(ctx, `SELECT attempt_token, state, result FROM builds WHERE id = $1`,
		buildID).Scan(&cur, &state, &res)
	return err == nil && cur == token && state == build.StateFinished &&
		(res.String == result || res.String == build.Cancelled)
}

func finishBuild(ctx context.Context, tx *sql.Tx, buildID int64, result, reason string, now int64) error {
	_, err := tx.ExecContext(ctx, `UPDATE builds SET state = $1, result = $2, reason = $3,
		finished_at = $4 WHERE id = $5`, build.StateFinished, result, reason, now, buildID)
	if err != nil {
		return fmt.Errorf("finish build %d: %w", buildID, err)
	}
	_, err = tx.ExecContext(ctx, `UPDATE steps SET state = $1, result = $2,
		reason = 'the build ended while the step ran', finished_at = $3
		WHERE build_id = $4 AND state <> $1`, build.StateFinished, result, now, buildID)
	if err != nil {
		return fmt.Errorf("finish steps of build %d: %w", buildID, err)
	}
	_, err = tx.ExecContext(ctx, `UPDATE build_requests SET state = $1, completed_at = $2
		WHERE build_id = $3`, RequestComplete, now, buildID)
	if err != nil {
		return fmt.Errorf("complete request of build %d: %w", buildID, err)
	}
	_, err = releaseLocks(ctx, tx, buildID, -1)
	return err
}

// loseSessionBuilds ends the running builds of an ended session.
func loseSessionBuilds(ctx context.Context, tx *sql.Tx, sessionID int64, reason string, now int64) error {
	rows, err := tx.QueryContext(ctx, `SELECT id FROM builds WHERE session_id = $1 AND state = $2`,
		sessionID, build.StateRunning)
	if err != nil {
		return fmt.Errorf("find builds of session %d: %w", sessionID, err)
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return err
		}
		ids = append(ids, id)
	}
	rows.Close()
	for _, id := range ids {
		if err := loseBuild(ctx, tx, id, reason, now); err != nil {
			return err
		}
	}
	return nil
}

// loseBuild ends a running build whose worker is gone. A build whose
// cancellation was asked for ends cancelled. Otherwise, if its builder
// retries lost builds it ends with result retry and its request goes back
// to pending, linked to it, so the next attempt is a new build that starts
// afresh; if not, it ends with an exception. Either way the reason and the
// build's steps and logs are kept.
func loseBuild(ctx context.Context, tx *sql.Tx, id int64, reason string, now int64) error {
	return endLostBuild(ctx, tx, id, "worker lost: "+reason, now, false)
}

// loseUnreceivedBuild ends a build that its worker, alive and polling, does
// not report running. If no step of it was ever started, the worker never
// received it (the answer that carried it was lost, as when the master that
// claimed it died before answering), so nothing of it ran: it is retried as
// a new, linked build whatever the builder's policy. Otherwise it is lost
// as loseBuild says.
func loseUnreceivedBuild(ctx context.Context, tx *sql.Tx, id int64, reason string, now int64) error {
	var steps int
	err := tx.QueryRowContext(ctx, `SELECT count(*) FROM steps WHERE build_id = $1`, id).Scan(&steps)
	if err != nil {
		return fmt.Errorf("count steps of build %d: %w", id, err)
	}
	if steps == 0 {
		return endLostBuild(ctx, tx, id, "the worker never received the build", now, true)
	}
	return loseBuild(ctx, tx, id, reason, now)
}

// endLostBuild is loseBuild with the whole reason given, retrying the
// build whatever its builder's policy when retry is set.
func endLostBuild(ctx context.Context, tx *sql.Tx, id int64, reason string, now int64, retry bool) error {
	var request int64
	var spec, cancelReason string
	var cancel int
	var retired sql.NullInt64
	err := tx.QueryRowContext(ctx, `SELECT bu.request_id, b.spec, bu.cancel_requested, bu.reason,
		b.retired_generation FROM builds bu JOIN builders b ON b.id = bu.builder_id WHERE bu.id = $1`,
		id).Scan(&request, &spec, &cancel, &cancelReason, &retired)
	if err != nil {
		return fmt.Errorf("look up lost build %d: %w", id, err)
	}
	if cancel == 1 {
		// Someone asked for the build to end: it is not retried.
		return finishBuild(ctx, tx, id, build.Cancelled,
			cancelReason+" (the build ended before its worker stopped it: "+reason+")", now)
	}
	var b config.Builder
	if err := json.Unmarshal([]byte(spec), &b); err != nil {
		return fmt.Errorf("decode builder of build %d: %w", id, err)
	}
	if !b.RetryLost && !retry {
		return finishBuild(ctx, tx, id, build.Exception, reason, now)
	}
	if retired.Valid {
		// Requeued, the request would wait for ever: nothing claims the
		// requests of a removed builder.
		return finishBuild(ctx, tx, id, build.Exception, fmt.Sprintf("%s; not retried: builder %q "+
			"was removed from the configuration in generation %d", reason, b.Name, retired.Int64), now)
	}
	if err := finishBuild(ctx, tx, id, build.Retry, reason+"; retried", now); err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `UPDATE build_requests SET state = $1, claimed_at = NULL,
		completed_at = NULL, build_id = NULL, retry_of = $2 WHERE id = $3`,
		RequestPending, id, request)
	if err != nil {
		return fmt.Errorf("requeue request %d: %w", request, err)
	}
	return nil
}

// CancelBuild asks for a running build to be cancelled. The worker is told
// on its next poll; if the build's session is no longer live the build
// ends cancelled at once. Cancelling a finished build is a conflict.
func (s *Store) CancelBuild(ctx context.Context, buildID int64, reason string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		var state, sessState string
		err := tx.QueryRowContext(ctx, `SELECT b.state, COALESCE(s.state, '') FROM builds b
			LEFT JOIN worker_sessions s ON s.id = b.session_id WHERE b.id = $1`,
			buildID).Scan(&state, &sessState)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("build %d: %w", buildID, ErrNotFound)
		}
		if err != nil {
			return err
		}
		if state != build.StateRunning {
			return fmt.Errorf("build %d has already finished: %w", buildID, ErrConflict)
		}
		if sessState != SessionActive {
			if err := finishBuild(ctx, tx, buildID, build.Cancelled, reason, micros(time.Now())); err != nil {
				return err
			}
			return s.notify(ctx, tx, TopicRequest)
		}
		_, err = tx.ExecContext(ctx, `UPDATE builds SET cancel_requested = 1, reason = $1
			WHERE id = $2`, reason, buildID)
		if err != nil {
			return err
		}
		// The worker may be polling another master: wake them all.
		return s.notify(ctx, tx, TopicCancel)
	})
}

// CancelOrders lists the running builds of a session whose cancellation
// was asked for.
func (s *Store) CancelOrders(ctx context.Context, sessionID int64) ([]int64, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id FROM builds WHERE session_id = $1
		AND state = $2 AND cancel_requested = 1`, sessionID, build.StateRunning)
	if err != nil {
		return nil, fmt.Errorf("find cancel orders: %w", err)
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// SessionBuilds lists the ids of the builds a session is running.
func (s *Store) SessionBuilds(ctx context.Context, sessionID int64) ([]int64, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id FROM builds WHERE session_id = $1 AND state = $2`,
		sessionID, build.StateRunning)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}
