package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/regent-ci/regent/internal/build"
)

// ChildRequest is a build request started by a trigger step, with the
// result of its build once finished.
type ChildRequest struct {
	BuildRequest
	Scheduler string  `json:"scheduler"`
	Result    *string `json:"result"`
}

// TriggeredRequests lists the build requests that the trigger step step of
// build parent started, oldest first.
func (s *Store) TriggeredRequests(ctx context.Context, parent int64, step int) ([]ChildRequest, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT r.id, r.buildset_id, b.name, r.state, r.reason,
		r.build_id, bs.scheduler, bu.result
		FROM build_requests r JOIN buildsets bs ON bs.id = r.buildset_id
		JOIN builders b ON b.id = r.builder_id LEFT JOIN builds bu ON bu.id = r.build_id
		WHERE bs.parent_build = $1 AND bs.parent_step = $2 ORDER BY r.id`, parent, step)
	if err != nil {
		return nil, fmt.Errorf("list requests triggered by build %d step %d: %w", parent, step, err)
	}
	defer rows.Close()
	var out []ChildRequest
	for rows.Next() {
		var c ChildRequest
		var buildID sql.NullInt64
		var result sql.NullString
		if err := rows.Scan(&c.ID, &c.BuildsetID, &c.Builder, &c.State, &c.Reason, &buildID,
			&c.Scheduler, &result); err != nil {
			return nil, err
		}
		if buildID.Valid {
			c.Build = &buildID.Int64
		}
		if result.Valid {
			c.Result = &result.String
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// CancelOrphanedChildren cancels what trigger steps started for parent
// builds that were cancelled: pending child requests end cancelled and
// running child builds are asked to stop, each with a reason naming the
// parent. It returns how many requests and builds it cancelled. Any master
// may call it at any time: it acts on the database alone.
func (s *Store) CancelOrphanedChildren(ctx context.Context) (int, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT r.id, r.state, r.build_id, bs.parent_build
		FROM build_requests r JOIN buildsets bs ON bs.id = r.buildset_id
		JOIN builds p ON p.id = bs.parent_build
		LEFT JOIN builds c ON c.id = r.build_id
		WHERE r.state IN ($1, $2) AND (p.cancel_requested = 1 OR p.result = $3)
		AND (c.id IS NULL OR (c.state = $4 AND c.cancel_requested = 0))
		ORDER BY r.id LIMIT 500`,
		RequestPending, RequestClaimed, build.Cancelled, build.StateRunning)
	if err != nil {
		return 0, fmt.Errorf("find children of cancelled builds: %w", err)
	}
	type orphan struct {
		request, parent int64
		state           string
		build           sql.NullInt64
	}
	var orphans []orphan
	for rows.Next() {
		var o orphan
		if err := rows.Scan(&o.request, &o.state, &o.build, &o.parent); err != nil {
			rows.Close()
			return 0, err
		}
		orphans = append(orphans, o)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}

	n := 0
	for _, o := range orphans {
		reason := fmt.Sprintf("the build that triggered it, build %d, was cancelled", o.parent)
		if o.state == RequestPending {
			res, err := s.db.ExecContext(ctx, `UPDATE build_requests SET state = $1, reason = $2,
				completed_at = $3 WHERE id = $4 AND state = $5`,
				RequestCancelled, reason, micros(time.Now()), o.request, RequestPending)
			if err != nil {
				return n, fmt.Errorf("cancel child request %d: %w", o.request, err)
			}
			if k, _ := res.RowsAffected(); k > 0 {
				n++
			}
			continue
		}
		if !o.build.Valid {
			continue
		}
		err := s.CancelBuild(ctx, o.build.Int64, reason)
		if errors.Is(err, ErrConflict) {
			continue // it finished meanwhile
		}
		if err != nil {
			return n, fmt.Errorf("cancel child build %d: %w", o.build.Int64, err)
		}
		n++
	}
	if n > 0 {
		if err := s.Notify(ctx, TopicCancel); err != nil {
			return n, err
		}
	}
	return n, nil
}
