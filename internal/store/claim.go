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
	// Clean is set for a retry, which must start from a clean workspace.
	Clean bool
}

// Claim gives up to max pending build requests that the session's worker
// may run to that worker, oldest first, each as a new running build with a
// fresh attempt token. It never hands out more builds than the worker's
// max_builds allows. On PostgreSQL concurrent claims skip each other's
// locked rows, so every request is claimed at most once.
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
		cands, err := s.claimable(ctx, tx, sess.WorkerName, room)
		if err != nil {
			return err
		}
		now := micros(time.Now())
		for _, c := range cands {
			cl, err := startBuild(ctx, tx, c, sess, master, now)
			if err != nil {
				return err
			}
			out = append(out, cl)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("claim build requests for worker %q: %w", sess.WorkerName, err)
	}
	return out, nil
}

type candidate struct {
	requestID  int64
	builderID  int64
	builder    config.Builder
	properties map[string]string
	retryOf    sql.NullInt64
}

// claimable finds up to n pending requests, oldest first, whose builder
// lists the worker, and locks them for this transaction. Candidates are
// read without locks and then locked one by one, skipping any another
// master holds, so that concurrent claims pass each other instead of
// waiting or all locking the same page of rows.
func (s *Store) claimable(ctx context.Context, tx *sql.Tx, worker string, n int) ([]candidate, error) {
	rows, err := tx.QueryContext(ctx, `SELECT r.id, r.builder_id, b.spec, bs.properties, r.retry_of
		FROM build_requests r JOIN builders b ON b.id = r.builder_id
		JOIN buildsets bs ON bs.id = r.buildset_id
		WHERE r.state = 'pending' AND b.retired_generation IS NULL
		ORDER BY r.id LIMIT 200`)
	if err != nil {
		return nil, fmt.Errorf("find pending requests: %w", err)
	}
	var all []candidate
	for rows.Next() {
		var c candidate
		var spec, props string
		if err := rows.Scan(&c.requestID, &c.builderID, &spec, &props, &c.retryOf); err != nil {
			rows.Close()
			return nil, err
		}
		if err := json.Unmarshal([]byte(spec), &c.builder); err != nil {
			rows.Close()
			return nil, fmt.Errorf("decode builder %d: %w", c.builderID, err)
		}
		if !slices.Contains(c.builder.Workers, worker) {
			continue
		}
		if err := json.Unmarshal([]byte(props), &c.properties); err != nil {
			rows.Close()
			return nil, fmt.Errorf("decode request %d properties: %w", c.requestID, err)
		}
		all = append(all, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if s.d.name != "postgres" {
		// SQLite transactions here take the write lock at BEGIN, so the
		// rows read are already this transaction's alone.
		return all[:min(n, len(all))], nil
	}
	var out []candidate
	for _, c := range all {
		if len(out) == n {
			break
		}
		var id int64
		err := tx.QueryRowContext(ctx, `SELECT id FROM build_requests WHERE id = $1
			AND state = 'pending' FOR UPDATE SKIP LOCKED`, c.requestID).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("lock request %d: %w", c.requestID, err)
		}
		out = append(out, c)
	}
	return out, nil
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
		Clean: c.retryOf.Valid}, nil
}
