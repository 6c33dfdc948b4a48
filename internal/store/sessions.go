package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// ErrBadCredentials means a worker name and password did not match an
// active worker, or a session token did not match a live session.
var ErrBadCredentials = errors.New("bad worker credentials")

// Session is a live worker session.
type Session struct {
	ID         int64
	WorkerID   int64
	WorkerName string
	MaxBuilds  int
	Master     string
	State      string
	Reason     string
	// WorkerRetired is set once the worker left the configuration.
	WorkerRetired bool
}

// OpenSession checks a worker's password and starts a new session for it,
// superseding any earlier one: the old session ends at once and the builds
// it was running end with an exception naming the reason. It returns the
// session and its bearer token; only a hash of the token is stored.
func (s *Store) OpenSession(ctx context.Context, worker, password, master, host string) (Session, string, error) {
	var id int64
	var hash string
	var maxBuilds int
	err := s.db.QueryRowContext(ctx, `SELECT id, password_hash, max_builds FROM workers
		WHERE name = $1 AND retired_generation IS NULL`, worker).Scan(&id, &hash, &maxBuilds)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && !checkPassword(hash, password)) {
		return Session{}, "", ErrBadCredentials
	}
	if err != nil {
		return Session{}, "", fmt.Errorf("look up worker %q: %w", worker, err)
	}
	token := randomToken()
	now := micros(time.Now())
	sess := Session{WorkerID: id, WorkerName: worker, MaxBuilds: maxBuilds, Master: master, State: SessionActive}
	err = s.tx(ctx, func(tx *sql.Tx) error {
		reason := fmt.Sprintf("worker %q started a new session from %s", worker, host)
		old, err := sessionIDs(ctx, tx, `worker_id = $1 AND state = $2`, id, SessionActive)
		if err != nil {
			return err
		}
		for _, o := range old {
			if err := endSession(ctx, tx, o, SessionSuperseded, reason, now); err != nil {
				return err
			}
		}
		err = tx.QueryRowContext(ctx, `INSERT INTO worker_sessions (worker_id, token_hash, master,
			host, state, started_at, last_seen) VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING id`,
			id, hashToken(token), master, host, SessionActive, now).Scan(&sess.ID)
		if err != nil {
			return err
		}
		// A session revoked because the password changed leaves its
		// builds running; the worker that proves the new password takes
		// them over. If it is not the same process, the builds are missing
		// from its reports and end as lost.
		_, err = tx.ExecContext(ctx, `UPDATE builds SET session_id = $1 WHERE state = 'running'
			AND session_id IN (SELECT id FROM worker_sessions WHERE worker_id = $2 AND state = $3)`,
			sess.ID, id, SessionRevoked)
		return err
	})
	if err != nil {
		return Session{}, "", fmt.Errorf("open session for worker %q: %w", worker, err)
	}
	return sess, token, nil
}

// SessionByToken returns the session a bearer token belongs to, whatever
// its state. Callers refuse sessions that are not active, telling the
// worker the reason.
func (s *Store) SessionByToken(ctx context.Context, token string) (Session, error) {
	return s.session(ctx, `s.token_hash = $1`, hashToken(token))
}

// SessionByID returns a session's current state.
func (s *Store) SessionByID(ctx context.Context, id int64) (Session, error) {
	return s.session(ctx, `s.id = $1`, id)
}

func (s *Store) session(ctx context.Context, where string, arg any) (Session, error) {
	var sess Session
	err := s.db.QueryRowContext(ctx, `SELECT s.id, s.worker_id, w.name, w.max_builds, s.master,
		s.state, s.reason, w.retired_generation IS NOT NULL
		FROM worker_sessions s JOIN workers w ON w.id = s.worker_id WHERE `+where, arg).Scan(
		&sess.ID, &sess.WorkerID, &sess.WorkerName, &sess.MaxBuilds, &sess.Master, &sess.State,
		&sess.Reason, &sess.WorkerRetired)
	if errors.Is(err, sql.ErrNoRows) {
		return Session{}, ErrBadCredentials
	}
	if err != nil {
		return Session{}, fmt.Errorf("look up session: %w", err)
	}
	return sess, nil
}

// TouchSession records that a session's worker was heard from now.
func (s *Store) TouchSession(ctx context.Context, id int64, master string) error {
	_, err := s.db.ExecContext(ctx, `UPDATE worker_sessions SET last_seen = $1, master = $2
		WHERE id = $3 AND state = $4`, micros(time.Now()), master, id, SessionActive)
	if err != nil {
		return fmt.Errorf("touch session %d: %w", id, err)
	}
	return nil
}

// CloseSession ends a session at the worker's own request.
func (s *Store) CloseSession(ctx context.Context, id int64, reason string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		return endSession(ctx, tx, id, SessionClosed, reason, micros(time.Now()))
	})
}

// ExpireSessions declares lost every active session not heard from within
// ttl, and every revoked session whose builds are still running; their
// builds end with an exception or are retried. It returns the sessions it
// ended.
func (s *Store) ExpireSessions(ctx context.Context, ttl time.Duration) ([]int64, error) {
	var ended []int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		now := time.Now()
		ids, err := sessionIDs(ctx, tx, `state = $1 AND last_seen < $2`,
			SessionActive, micros(now.Add(-ttl)))
		if err != nil {
			return err
		}
		for _, id := range ids {
			reason := fmt.Sprintf("worker not heard from for more than %s", ttl)
			if err := endSession(ctx, tx, id, SessionLost, reason, micros(now)); err != nil {
				return err
			}
		}
		ended = ids
		// A revoked session's worker is told to stop on its next poll; if
		// it never polls again, its builds end here.
		stale, err := sessionIDs(ctx, tx, `state = $1 AND last_seen < $2 AND id IN
			(SELECT session_id FROM builds WHERE state = 'running')`,
			SessionRevoked, micros(now.Add(-ttl)))
		if err != nil {
			return err
		}
		for _, id := range stale {
			if err := loseSessionBuilds(ctx, tx, id, "the worker's credentials were revoked", micros(now)); err != nil {
				return err
			}
		}
		return nil
	})
	return ended, err
}

func sessionIDs(ctx context.Context, tx *sql.Tx, where string, args ...any) ([]int64, error) {
	rows, err := tx.QueryContext(ctx, `SELECT id FROM worker_sessions WHERE `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("find sessions: %w", err)
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

func endSession(ctx context.Context, tx *sql.Tx, id int64, state, reason string, now int64) error {
	_, err := tx.ExecContext(ctx, `UPDATE worker_sessions SET state = $1, reason = $2, ended_at = $3
		WHERE id = $4`, state, reason, now, id)
	if err != nil {
		return fmt.Errorf("end session %d: %w", id, err)
	}
	return loseSessionBuilds(ctx, tx, id, reason, now)
}

func randomToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("read random token: %v", err))
	}
	return hex.EncodeToString(b)
}

func hashToken(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// ReconcileRunning ends the builds the master believes a session runs but
// the worker does not report, once they are older than grace (a build
// handed out moments ago may not be in the report yet). This covers an
// assignment whose answer never reached the worker, and a worker process
// that restarted.
func (s *Store) ReconcileRunning(ctx context.Context, sessionID int64, running []int64, grace time.Duration) error {
	reported := map[int64]bool{}
	for _, id := range running {
		reported[id] = true
	}
	return s.tx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT id FROM builds WHERE session_id = $1
			AND state = 'running' AND started_at < $2`, sessionID, micros(time.Now().Add(-grace)))
		if err != nil {
			return err
		}
		var missing []int64
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			if !reported[id] {
				missing = append(missing, id)
			}
		}
		rows.Close()
		for _, id := range missing {
			if err := loseUnreceivedBuild(ctx, tx, id, "the worker no longer reports running it",
				micros(time.Now())); err != nil {
				return err
			}
		}
		return nil
	})
}
