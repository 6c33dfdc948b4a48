package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/regent-ci/regent/internal/build"
)

// This file holds the read-only queries that the web UI and REST API need
// beyond the ones the rest of the master uses.

// LatestBuilds returns the newest build of every builder that has one,
// keyed by the builder's id (a retired builder and an active one may share
// a name).
func (s *Store) LatestBuilds(ctx context.Context) (map[int64]Build, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT builder_id, max(id) FROM builds GROUP BY builder_id`)
	if err != nil {
		return nil, fmt.Errorf("list latest builds: %w", err)
	}
	builderOf := map[int64]int64{}
	for rows.Next() {
		var builder, id int64
		if err := rows.Scan(&builder, &id); err != nil {
			rows.Close()
			return nil, err
		}
		builderOf[id] = builder
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list latest builds: %w", err)
	}

	out := make(map[int64]Build, len(builderOf))
	rows, err = s.db.QueryContext(ctx, `SELECT `+buildColumns+` WHERE bu.id IN
		(SELECT max(id) FROM builds GROUP BY builder_id)`)
	if err != nil {
		return nil, fmt.Errorf("list latest builds: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		b, err := scanBuild(rows)
		if err != nil {
			return nil, err
		}
		if builder, ok := builderOf[b.ID]; ok {
			out[builder] = b
		}
	}
	return out, rows.Err()
}

// StepByNumber returns one step of a build.
func (s *Store) StepByNumber(ctx context.Context, buildID int64, number int) (Step, error) {
	var st Step
	var result sql.NullString
	var started, finished sql.NullInt64
	err := s.db.QueryRowContext(ctx, `SELECT build_id, number, name, state, result, reason,
		log_size, started_at, finished_at FROM steps WHERE build_id = $1 AND number = $2`,
		buildID, number).Scan(&st.BuildID, &st.Number, &st.Name, &st.State, &result, &st.Reason,
		&st.LogSize, &started, &finished)
	if errors.Is(err, sql.ErrNoRows) {
		return Step{}, fmt.Errorf("step %d of build %d: %w", number, buildID, ErrNotFound)
	}
	if err != nil {
		return Step{}, fmt.Errorf("look up step %d of build %d: %w", number, buildID, err)
	}
	if result.Valid {
		st.Result = &result.String
	}
	st.StartedAt, st.FinishedAt = nullTime(started), nullTime(finished)
	return st, nil
}

// QueueCounts is a snapshot of the cluster's work, for metrics.
type QueueCounts struct {
	RunningBuilds    int
	PendingRequests  int
	ConnectedWorkers int
	ActiveGeneration int64
}

// Counts returns how many builds run, build requests wait and workers
// have a live session, and the active generation's number.
func (s *Store) Counts(ctx context.Context) (QueueCounts, error) {
	var c QueueCounts
	var gen sql.NullInt64
	err := s.db.QueryRowContext(ctx, `SELECT
		(SELECT count(*) FROM builds WHERE state = $1),
		(SELECT count(*) FROM build_requests WHERE state = $2),
		(SELECT count(*) FROM worker_sessions WHERE state = $3),
		(SELECT max(number) FROM generations)`,
		build.StateRunning, RequestPending, SessionActive).Scan(
		&c.RunningBuilds, &c.PendingRequests, &c.ConnectedWorkers, &gen)
	if err != nil {
		return QueueCounts{}, fmt.Errorf("count builds and requests: %w", err)
	}
	c.ActiveGeneration = gen.Int64
	return c, nil
}
