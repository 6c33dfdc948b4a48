package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
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
}

// CreateBuildset stores a buildset with one pending build request per
// builder. Builders must be active. When the input names a change that
// the scheduler already made a buildset for, nothing is written and the
// existing buildset is returned with created false.
func (s *Store) CreateBuildset(ctx context.Context, in BuildsetInput) (Buildset, bool, error) {
	props, err := json.Marshal(nonNilMap(in.Properties))
	if err != nil {
		return Buildset{}, false, err
	}
	var bs Buildset
	created := false
	err = s.tx(ctx, func(tx *sql.Tx) error {
		gen, err := activeGeneration(ctx, tx)
		if err != nil {
			return fmt.Errorf("no active configuration: %w", err)
		}
		ids := make([]int64, len(in.Builders))
		for i, name := range in.Builders {
			err := tx.QueryRowContext(ctx, `SELECT id FROM builders WHERE name = $1
				AND retired_generation IS NULL`, name).Scan(&ids[i])
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("builder %q: %w", name, ErrNotFound)
			}
			if err != nil {
				return err
			}
		}
		now := micros(time.Now())
		var id int64
		err = tx.QueryRowContext(ctx, `INSERT INTO buildsets (reason, scheduler, change_id,
			properties, generation, created_at) VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (scheduler, change_id) DO NOTHING RETURNING id`,
			in.Reason, in.Scheduler, in.ChangeID, string(props), gen.Number, now).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			err = tx.QueryRowContext(ctx, `SELECT id FROM buildsets WHERE scheduler = $1
				AND change_id = $2`, in.Scheduler, in.ChangeID).Scan(&id)
			bs.ID = id
			return err
		}
		if err != nil {
			return fmt.Errorf("insert buildset: %w", err)
		}
		for _, bid := range ids {
			_, err := tx.ExecContext(ctx, `INSERT INTO build_requests (buildset_id, builder_id,
				state, submitted_at) VALUES ($1, $2, $3, $4)`, id, bid, RequestPending, now)
			if err != nil {
				return fmt.Errorf("insert build request: %w", err)
			}
		}
		bs.ID, created = id, true
		return nil
	})
	if err != nil {
		return Buildset{}, false, fmt.Errorf("create buildset: %w", err)
	}
	bs, err = s.Buildset(ctx, bs.ID)
	return bs, created, err
}

// Buildset returns a buildset with its build requests.
func (s *Store) Buildset(ctx context.Context, id int64) (Buildset, error) {
	list, err := s.Buildsets(ctx, ListOptions{ID: id, Limit: 1})
	if err != nil {
		return Buildset{}, err
	}
	if len(list) == 0 {
		return Buildset{}, ErrNotFound
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
		r.submitted_at, r.claimed_at, r.completed_at, r.build_id
		FROM build_requests r JOIN builders b ON b.id = r.builder_id
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
		var claimed, completed, build sql.NullInt64
		if err := rows.Scan(&r.ID, &r.BuildsetID, &r.Builder, &r.State, &r.Reason, &sub,
			&claimed, &completed, &build); err != nil {
			return nil, err
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
	res, err := s.db.ExecContext(ctx, `UPDATE build_requests SET state = $1, reason = $2,
		completed_at = $3 WHERE id = $4 AND state = $5`,
		RequestCancelled, reason, micros(time.Now()), id, RequestPending)
	if err != nil {
		return fmt.Errorf("cancel build request %d: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("build request %d is not pending: %w", id, ErrConflict)
	}
	return nil
}

func nonNilMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}
