package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/regent-ci/regent/internal/config"
)

// Unreceived returns the builds handed to a session within grace, and
// before handedBefore, that its worker neither reports running nor has
// started a step of: handedBefore is a moment before the worker made its
// report, which a build handed out later could not be in. The answer
// that carried them may never have reached it (a cut connection, a master
// that stopped mid-answer). The master offers them again, with the same
// attempt token, so a lost answer costs no build; once grace has passed
// ReconcileRunning ends the ones still missing as lost. A worker that did
// receive one ignores the repeat.
func (s *Store) Unreceived(ctx context.Context, sessionID int64, running []int64,
	handedBefore time.Time, grace time.Duration) ([]Claimed, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT b.id, b.attempt_token, b.steps_spec, bl.spec,
		b.retry_of FROM builds b JOIN builders bl ON bl.id = b.builder_id
		WHERE b.session_id = $1 AND b.state = 'running' AND b.started_at >= $2
		AND b.started_at < $3 AND NOT EXISTS (SELECT 1 FROM steps st WHERE st.build_id = b.id)
		ORDER BY b.id`, sessionID, micros(time.Now().Add(-grace)), micros(handedBefore))
	if err != nil {
		return nil, fmt.Errorf("find builds not received by session %d: %w", sessionID, err)
	}
	type unreceived struct {
		id             int64
		token          string
		steps, builder string
		retryOf        sql.NullInt64
	}
	var found []unreceived
	for rows.Next() {
		var u unreceived
		if err := rows.Scan(&u.id, &u.token, &u.steps, &u.builder, &u.retryOf); err != nil {
			rows.Close()
			return nil, err
		}
		if !slices.Contains(running, u.id) {
			found = append(found, u)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var out []Claimed
	for _, u := range found {
		b, err := s.BuildByID(ctx, u.id)
		if err != nil {
			return nil, err
		}
		var steps []config.Step
		var builder config.Builder
		if err := json.Unmarshal([]byte(u.steps), &steps); err != nil {
			return nil, fmt.Errorf("decode steps of build %d: %w", u.id, err)
		}
		if err := json.Unmarshal([]byte(u.builder), &builder); err != nil {
			return nil, fmt.Errorf("decode builder of build %d: %w", u.id, err)
		}
		out = append(out, Claimed{Build: b, AttemptToken: u.token, Steps: steps, Env: builder.Env,
			SecretEnv: builder.SecretEnv, Clean: u.retryOf.Valid})
	}
	return out, nil
}
