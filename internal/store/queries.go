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

// Builders lists builders by name; retired ones only when asked.
func (s *Store) Builders(ctx context.Context, includeRetired bool) ([]Builder, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, name, description, tags, spec,
		created_generation, retired_generation FROM builders
		WHERE $1 OR retired_generation IS NULL ORDER BY name, id`, includeRetired)
	if err != nil {
		return nil, fmt.Errorf("list builders: %w", err)
	}
	defer rows.Close()
	var out []Builder
	for rows.Next() {
		b, err := scanBuilder(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, rows.Err()
}

// BuilderByName returns the active builder with that name, or else the
// most recently retired one.
func (s *Store) BuilderByName(ctx context.Context, name string) (Builder, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, name, description, tags, spec,
		created_generation, retired_generation FROM builders WHERE name = $1
		ORDER BY retired_generation IS NOT NULL, retired_generation DESC LIMIT 1`, name)
	if err != nil {
		return Builder{}, fmt.Errorf("look up builder %q: %w", name, err)
	}
	defer rows.Close()
	if !rows.Next() {
		return Builder{}, fmt.Errorf("builder %q: %w", name, ErrNotFound)
	}
	return scanBuilder(rows)
}

func scanBuilder(rows *sql.Rows) (Builder, error) {
	var b Builder
	var tags, spec string
	var retired sql.NullInt64
	if err := rows.Scan(&b.ID, &b.Name, &b.Description, &tags, &spec, &b.CreatedGeneration, &retired); err != nil {
		return Builder{}, err
	}
	if retired.Valid {
		b.RetiredGeneration = &retired.Int64
	}
	b.Spec = json.RawMessage(spec)
	if err := json.Unmarshal([]byte(tags), &b.Tags); err != nil {
		return Builder{}, fmt.Errorf("decode tags of builder %q: %w", b.Name, err)
	}
	return b, nil
}

// BuildFilter selects builds.
type BuildFilter struct {
	Builder string
	State   string
	Before  int64
	Limit   int
}

// buildColumns selects what scanBuild reads. A lost build's retry is the
// build of the same request whose retry_of names it.
const buildColumns = `bu.id, b.name, bu.number, bu.request_id, r.buildset_id, bu.state,
	bu.result, bu.reason, bu.properties, bu.retry_of,
	(SELECT min(rb.id) FROM builds rb WHERE rb.retry_of = bu.id), w.name, bu.master, bu.created_at,
	bu.started_at, bu.finished_at
	FROM builds bu JOIN builders b ON b.id = bu.builder_id
	JOIN build_requests r ON r.id = bu.request_id
	LEFT JOIN workers w ON w.id = bu.worker_id`

// Builds lists builds newest first. A builder filter follows the builder
// through renames, since history stays with the builder.
func (s *Store) Builds(ctx context.Context, f BuildFilter) ([]Build, error) {
	before, limit := ListOptions{Before: f.Before, Limit: f.Limit}.bounds()
	rows, err := s.db.QueryContext(ctx, `SELECT `+buildColumns+`
		WHERE bu.id < $1 AND ($2 = '' OR b.name = $2) AND ($3 = '' OR bu.state = $3)
		ORDER BY bu.id DESC LIMIT $4`, before, f.Builder, f.State, limit)
	if err != nil {
		return nil, fmt.Errorf("list builds: %w", err)
	}
	defer rows.Close()
	var out []Build
	for rows.Next() {
		b, err := scanBuild(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, rows.Err()
}

// BuildByID returns one build.
func (s *Store) BuildByID(ctx context.Context, id int64) (Build, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+buildColumns+` WHERE bu.id = $1`, id)
	if err != nil {
		return Build{}, fmt.Errorf("look up build %d: %w", id, err)
	}
	defer rows.Close()
	if !rows.Next() {
		return Build{}, fmt.Errorf("build %d: %w", id, ErrNotFound)
	}
	return scanBuild(rows)
}

func scanBuild(rows *sql.Rows) (Build, error) {
	var b Build
	var result, worker sql.NullString
	var retryOf, retriedBy, started, finished sql.NullInt64
	var props string
	var created int64
	if err := rows.Scan(&b.ID, &b.Builder, &b.Number, &b.RequestID, &b.BuildsetID, &b.State,
		&result, &b.Reason, &props, &retryOf, &retriedBy, &worker, &b.Master, &created, &started, &finished); err != nil {
		return Build{}, err
	}
	if result.Valid {
		b.Result = &result.String
	}
	if worker.Valid {
		b.Worker = &worker.String
	}
	if retryOf.Valid {
		b.RetryOf = &retryOf.Int64
	}
	if retriedBy.Valid {
		b.RetriedBy = &retriedBy.Int64
	}
	b.CreatedAt = fromMicros(created)
	b.StartedAt, b.FinishedAt = nullTime(started), nullTime(finished)
	if err := json.Unmarshal([]byte(props), &b.Properties); err != nil {
		return Build{}, fmt.Errorf("decode properties of build %d: %w", b.ID, err)
	}
	return b, nil
}

// Steps lists a build's steps in order.
func (s *Store) Steps(ctx context.Context, buildID int64) ([]Step, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT build_id, number, name, state, result, reason,
		log_size, started_at, finished_at FROM steps WHERE build_id = $1 ORDER BY number`, buildID)
	if err != nil {
		return nil, fmt.Errorf("list steps of build %d: %w", buildID, err)
	}
	defer rows.Close()
	var out []Step
	for rows.Next() {
		var st Step
		var result sql.NullString
		var started, finished sql.NullInt64
		if err := rows.Scan(&st.BuildID, &st.Number, &st.Name, &st.State, &result, &st.Reason,
			&st.LogSize, &started, &finished); err != nil {
			return nil, err
		}
		if result.Valid {
			st.Result = &result.String
		}
		st.StartedAt, st.FinishedAt = nullTime(started), nullTime(finished)
		out = append(out, st)
	}
	return out, rows.Err()
}

// Workers lists workers by name with their live state; retired ones only
// when asked.
func (s *Store) Workers(ctx context.Context, includeRetired bool) ([]Worker, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT w.id, w.name, w.max_builds, w.tags,
		w.retired_generation, s.state, s.master, s.last_seen,
		(SELECT count(*) FROM builds bu WHERE bu.session_id = s.id AND bu.state = $2)
		FROM workers w LEFT JOIN worker_sessions s ON s.id =
			(SELECT max(id) FROM worker_sessions x WHERE x.worker_id = w.id)
		WHERE $1 OR w.retired_generation IS NULL ORDER BY w.name, w.id`,
		includeRetired, build.StateRunning)
	if err != nil {
		return nil, fmt.Errorf("list workers: %w", err)
	}
	defer rows.Close()
	var out []Worker
	for rows.Next() {
		var w Worker
		var tags string
		var retired, lastSeen sql.NullInt64
		var state, master sql.NullString
		if err := rows.Scan(&w.ID, &w.Name, &w.MaxBuilds, &tags, &retired, &state, &master,
			&lastSeen, &w.RunningBuilds); err != nil {
			return nil, err
		}
		if retired.Valid {
			w.RetiredGeneration = &retired.Int64
		}
		w.Master, w.LastSeen = master.String, nullTime(lastSeen)
		w.State = workerState(state.String, w.RunningBuilds)
		if err := json.Unmarshal([]byte(tags), &w.Tags); err != nil {
			return nil, fmt.Errorf("decode tags of worker %q: %w", w.Name, err)
		}
		out = append(out, w)
	}
	return out, rows.Err()
}

// workerState names what a user sees from the newest session's state.
func workerState(session string, running int) string {
	switch session {
	case SessionActive:
		if running > 0 {
			return WorkerBusy
		}
		return WorkerIdle
	case SessionLost:
		return WorkerLost
	default:
		return WorkerOffline
	}
}

// Now returns the database's clock, which all masters share.
func (s *Store) Now(ctx context.Context) (time.Time, error) {
	if s.d.name == "sqlite" {
		return time.Now().UTC(), nil
	}
	var t time.Time
	err := s.db.QueryRowContext(ctx, `SELECT clock_timestamp()`).Scan(&t)
	return t.UTC(), err
}

// BuildSteps returns the steps a build was started with, as recorded when
// it was claimed; a later configuration does not change them.
func (s *Store) BuildSteps(ctx context.Context, buildID int64) ([]config.Step, error) {
	var spec string
	err := s.db.QueryRowContext(ctx, `SELECT steps_spec FROM builds WHERE id = $1`, buildID).Scan(&spec)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("build %d: %w", buildID, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read steps of build %d: %w", buildID, err)
	}
	var steps []config.Step
	if err := json.Unmarshal([]byte(spec), &steps); err != nil {
		return nil, fmt.Errorf("decode steps of build %d: %w", buildID, err)
	}
	return steps, nil
}
