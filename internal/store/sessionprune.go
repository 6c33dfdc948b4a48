package store

import (
	"context"
	"fmt"
)

// PruneSessions deletes the ended sessions of a worker beyond the keep
// newest, except those that ran builds (the builds name them). A worker
// that reconnects often thus keeps a bounded number of session rows. It
// returns how many were deleted.
func (s *Store) PruneSessions(ctx context.Context, workerID int64, keep int) (int, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM worker_sessions WHERE worker_id = $1
		AND state <> $2
		AND id NOT IN (SELECT id FROM worker_sessions WHERE worker_id = $1
			ORDER BY id DESC LIMIT $3)
		AND NOT EXISTS (SELECT 1 FROM builds b WHERE b.session_id = worker_sessions.id)`,
		workerID, SessionActive, keep)
	if err != nil {
		return 0, fmt.Errorf("prune sessions of worker %d: %w", workerID, err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}
