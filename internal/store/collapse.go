package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
)

// collapse merges the pending build requests of one builder that the new
// request req covers into it: those of buildsets for the same repository
// and branch, not started by a trigger step. Each ends cancelled, with a
// reason naming req and its revision, and records req as the request it
// was merged into; requests merged earlier into one of them now point at
// req, with its reason, so that every merged request leads to the build
// that covered it.
// Nothing is merged for a buildset without a branch.
func collapse(ctx context.Context, tx *sql.Tx, builderID, req int64, props map[string]string, now int64) error {
	branch, repo := props["branch"], props["repository"]
	if branch == "" {
		return nil
	}
	rows, err := tx.QueryContext(ctx, `SELECT r.id, bs.properties FROM build_requests r
		JOIN buildsets bs ON bs.id = r.buildset_id
		WHERE r.builder_id = $1 AND r.state = $2 AND r.id < $3 AND bs.parent_build IS NULL
		ORDER BY r.id`, builderID, RequestPending, req)
	if err != nil {
		return fmt.Errorf("find requests to merge: %w", err)
	}
	var covered []int64
	for rows.Next() {
		var id int64
		var raw string
		if err := rows.Scan(&id, &raw); err != nil {
			rows.Close()
			return err
		}
		var p map[string]string
		if err := json.Unmarshal([]byte(raw), &p); err != nil {
			rows.Close()
			return fmt.Errorf("decode properties of request %d: %w", id, err)
		}
		if p["branch"] == branch && p["repository"] == repo {
			covered = append(covered, id)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}

	reason := fmt.Sprintf("merged into build request %d, which builds the newer revision %.12s of %s",
		req, props["revision"], branch)
	for _, id := range covered {
		_, err := tx.ExecContext(ctx, `UPDATE build_requests SET state = $1, reason = $2,
			completed_at = $3, merged_into = $4 WHERE id = $5 AND state = $6`,
			RequestCancelled, reason, now, req, id, RequestPending)
		if err != nil {
			return fmt.Errorf("merge request %d into %d: %w", id, req, err)
		}
		_, err = tx.ExecContext(ctx, `UPDATE build_requests SET merged_into = $1, reason = $2
			WHERE merged_into = $3`, req, reason, id)
		if err != nil {
			return fmt.Errorf("move requests merged into %d to %d: %w", id, req, err)
		}
	}
	return nil
}
