package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/regent-ci/regent/internal/config"
)

// BuildsetInput describes a buildset to create.
type BuildsetInput struct {
	Reason    string
	Scheduler string
	// ChangeID, when set, makes the buildset unique per scheduler and
	// change: creating it again returns the existing one.
	ChangeID   *int64
	Properties map[string]string
	Builders   []string
	// ParentBuild and ParentStep, when set, name the trigger step that
	// asked for the buildset; it is unique per scheduler and step.
	ParentBuild *int64
	ParentStep  int
	// UpstreamBuildset, when set, is the buildset whose success started
	// this one through a dependent scheduler; unique per scheduler.
	UpstreamBuildset *int64
}

// CreateBuildset stores a buildset with one pending build request per
// builder. Builders must be active. When the input names a change, a
// trigger step or an upstream buildset that the scheduler already made a
// buildset for, nothing is written and the existing buildset is returned
// with created false. Pending requests that a new request covers are
// merged into it when their builder collapses requests (see
// [Store.collapse]).
func (s *Store) CreateBuildset(ctx context.Context, in BuildsetInput) (Buildset, bool, error) {
	var id int64
	var created bool
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var err error
		id, created, err = s.createBuildset(ctx, tx, in, time.Now(), fenceStamp{})
		return err
	})
	if err != nil {
		return Buildset{}, false, fmt.Errorf("create buildset: %w", err)
	}
	bs, err := s.Buildset(ctx, id)
	return bs, created, err
}

// CreateBuildsets creates several buildsets in one transaction, as
// CreateBuildset creates one, and returns their ids and whether each was
// created. Requests of builders that collapse requests are merged as the
// buildsets are created, before any can be claimed, so of a batch of
// buildsets for one branch only the newest stays pending.
func (s *Store) CreateBuildsets(ctx context.Context, ins []BuildsetInput) ([]int64, []bool, error) {
	ids := make([]int64, len(ins))
	created := make([]bool, len(ins))
	err := s.tx(ctx, func(tx *sql.Tx) error {
		now := time.Now()
		for i, in := range ins {
			var err error
			if ids[i], created[i], err = s.createBuildset(ctx, tx, in, now, fenceStamp{}); err != nil {
				return err
			}
		}
		return s.notify(ctx, tx, TopicRequest)
	})
	if err != nil {
		return nil, nil, fmt.Errorf("create %d buildsets: %w", len(ins), err)
	}
	return ids, created, nil
}

// createBuildset does the work of CreateBuildset inside tx, stamping the
// buildset with the fence it is written under, and returns the buildset's
// id.
func (s *Store) createBuildset(ctx context.Context, tx *sql.Tx, in BuildsetInput, at time.Time, stamp fenceStamp) (int64, bool, error) {
	props, err := json.Marshal(nonNilMap(in.Properties))
	if err != nil {
		return 0, false, err
	}
	gen, err := activeGeneration(ctx, tx)
	if err != nil {
		return 0, false, fmt.Errorf("no active configuration: %w", err)
	}
	builders := make([]activeBuilder, len(in.Builders))
	for i, name := range in.Builders {
		var spec string
		err := tx.QueryRowContext(ctx, `SELECT id, spec FROM builders WHERE name = $1
			AND retired_generation IS NULL`, name).Scan(&builders[i].id, &spec)
		if errors.Is(err, sql.ErrNoRows) {
			return 0, false, fmt.Errorf("builder %q: %w", name, ErrNotFound)
		}
		if err != nil {
			return 0, false, err
		}
		if err := json.Unmarshal([]byte(spec), &builders[i].spec); err != nil {
			return 0, false, fmt.Errorf("decode builder %q: %w", name, err)
		}
	}
	now := micros(at)
	var parentStep *int
	if in.ParentBuild != nil {
		parentStep = &in.ParentStep
	}
	var id int64
	err = tx.QueryRowContext(ctx, `INSERT INTO buildsets (reason, scheduler, change_id,
		properties, generation, created_at, parent_build, parent_step, upstream_buildset,
		fence_service, fence_token, fenced_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT DO NOTHING RETURNING id`,
		in.Reason, in.Scheduler, in.ChangeID, string(props), gen.Number, now,
		in.ParentBuild, parentStep, in.UpstreamBuildset, stamp.service, stamp.token, stamp.at).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		id, err = existingBuildset(ctx, tx, in)
		return id, false, err
	}
	if err != nil {
		return 0, false, fmt.Errorf("insert buildset: %w", err)
	}
	for _, b := range builders {
		var req int64
		err := tx.QueryRowContext(ctx, `INSERT INTO build_requests (buildset_id, builder_id,
			state, submitted_at) VALUES ($1, $2, $3, $4) RETURNING id`,
			id, b.id, RequestPending, now).Scan(&req)
		if err != nil {
			return 0, false, fmt.Errorf("insert build request: %w", err)
		}
		if b.spec.CollapseRequests && in.ParentBuild == nil {
			if err := collapse(ctx, tx, b.id, req, in.Properties, now); err != nil {
				return 0, false, err
			}
		}
	}
	return id, true, nil
}

// activeBuilder is a builder a buildset is created for.
type activeBuilder struct {
	id   int64
	spec config.Builder
}

// existingBuildset finds the buildset that makes in a duplicate.
func existingBuildset(ctx context.Context, tx *sql.Tx, in BuildsetInput) (int64, error) {
	var id int64
	var err error
	switch {
	case in.ChangeID != nil:
		err = tx.QueryRowContext(ctx, `SELECT id FROM buildsets WHERE scheduler = $1
			AND change_id = $2`, in.Scheduler, *in.ChangeID).Scan(&id)
	case in.ParentBuild != nil:
		err = tx.QueryRowContext(ctx, `SELECT id FROM buildsets WHERE scheduler = $1
			AND parent_build = $2 AND parent_step = $3`, in.Scheduler, *in.ParentBuild,
			in.ParentStep).Scan(&id)
	case in.UpstreamBuildset != nil:
		err = tx.QueryRowContext(ctx, `SELECT id FROM buildsets WHERE scheduler = $1
			AND upstream_buildset = $2`, in.Scheduler, *in.UpstreamBuildset).Scan(&id)
	default:
		return 0, errors.New("insert buildset: refused without a reason")
	}
	if err != nil {
		return 0, fmt.Errorf("find existing buildset: %w", err)
	}
	return id, nil
}

// Buildset returns a buildset with its build requests.
func (s *Store) Buildset(ctx context.Context, id int64) (Buildset, error) {
	list, err := s.Buildsets(ctx, ListOptions{ID: id, Limit: 1})
	if err != nil {
		return Buildset{}, err
	}
	if len(list) == 0 {
		return Buildset{}, fmt.Errorf("buildset %d: %w", id, ErrNotFound)
	}
	reqs, err := s.Requests(ctx, RequestFilter{Buildset: id, Limit: 1000})
	if err != nil {
		return Buildset{}, err
	}
	list[0].Requests = reqs
	return list[0], nil
}

// ListOptions pages through a list newest first: Before is an exclusive
// id bound (0 for the newest), Limit the page size. ID selects one row.
type ListOptions struct {
	Before int64
	Limit  int
	ID     int64
}

func (o ListOptions) bounds() (int64, int) {
	before, limit := o.Before, o.Limit
	if before <= 0 {
		before = 1 << 62
	}
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	return before, limit
}

// Buildsets lists buildsets newest first.
func (s *Store) Buildsets(ctx context.Context, o ListOptions) ([]Buildset, error) {
	before, limit := o.bounds()
	q := `SELECT id, reason, scheduler, change_id, properties, generation, created_at
		FROM buildsets WHERE id < $1 AND ($2 = 0 OR id = $2) ORDER BY id DESC LIMIT $3`
	rows, err := s.db.QueryContext(ctx, q, before, o.ID, limit)
	if err != nil {
		return nil, fmt.Errorf("list buildsets: %w", err)
	}
	defer rows.Close()
	var out []Buildset
	for rows.Next() {
		var b Buildset
		var change sql.NullInt64
		var props string
		var at int64
		if err := rows.Scan(&b.ID, &b.Reason, &b.Scheduler, &change, &props, &b.Generation, &at); err != nil {
			return nil, err
		}
		if change.Valid {
			b.ChangeID = &change.Int64
		}
		b.CreatedAt = fromMicros(at)
		if err := json.Unmarshal([]byte(props), &b.Properties); err != nil {
			return nil, fmt.Errorf("decode buildset %d properties: %w", b.ID, err)
		}
		out = append(out, b)
	}
	return out, rows.Err()
}

// RequestFilter selects build requests.
type RequestFilter struct {
	Buildset int64
	Builder  string
	State    string
	Before   int64
	Limit    int
}

// Requests lists build requests newest first.
func (s *Store) Requests(ctx context.Context, f RequestFilter) ([]BuildRequest, error) {
	before, limit := ListOptions{Before: f.Before, Limit: f.Limit}.bounds()
	rows, err := s.db.QueryContext(ctx, `SELECT r.id, r.buildset_id, b.name, r.state, r.reason,
		r.submitted_at, r.claimed_at, r.completed_at, r.build_id, r.merged_into, m.build_id
		FROM build_requests r JOIN builders b ON b.id = r.builder_id
		LEFT JOIN build_requests m ON m.id = r.merged_into
		WHERE r.id < $1 AND ($2 = 0 OR r.buildset_id = $2) AND ($3 = '' OR b.name = $3)
		AND ($4 = '' OR r.state = $4) ORDER BY r.id DESC LIMIT $5`,
		before, f.Buildset, f.Builder, f.State, limit)
	if err != nil {
		return nil, fmt.Errorf("list build requests: %w", err)
	}
	defer rows.Close()
	var out []BuildRequest
	for rows.Next() {
		var r BuildRequest
		var sub int64
		var claimed, completed, build, merged, covered sql.NullInt64
		if err := rows.Scan(&r.ID, &r.BuildsetID, &r.Builder, &r.State, &r.Reason, &sub,
			&claimed, &completed, &build, &merged, &covered); err != nil {
			return nil, err
		}
		if merged.Valid {
			r.MergedInto = &merged.Int64
		}
		if covered.Valid {
			r.CoveredBy = &covered.Int64
		}
		r.SubmittedAt = fromMicros(sub)
		r.ClaimedAt, r.CompletedAt = nullTime(claimed), nullTime(completed)
		if build.Valid {
			r.Build = &build.Int64
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// CancelRequest cancels a pending build request with a reason. It returns
// ErrConflict if the request is no longer pending.
func (s *Store) CancelRequest(ctx context.Context, id int64, reason string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE build_requests SET state = $1, reason = $2,
			completed_at = $3 WHERE id = $4 AND state = $5`,
			RequestCancelled, reason, micros(time.Now()), id, RequestPending)
		if err != nil {
			return fmt.Errorf("cancel build request %d: %w", id, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("build request %d is not pending: %w", id, ErrConflict)
		}
		return s.notify(ctx, tx, TopicCancel)
	})
}

func nonNilMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}
