package store

import (
	"context"
	"database/sql"
	"fmt"
)

// RequestOutcome is where one build request of a buildset stands.
type RequestOutcome struct {
	Builder string `json:"builder"`
	State   string `json:"state"`
	// Result is the result of the request's build once it finished.
	Result string `json:"result,omitempty"`
}

// BuildsetOutcome is a buildset with where each of its requests stands.
type BuildsetOutcome struct {
	Buildset
	Outcomes []RequestOutcome `json:"outcomes"`
}

// BuildsetOutcomes lists up to limit buildsets with ids above after,
// oldest first, with the state and result of each of their requests.
func (s *Store) BuildsetOutcomes(ctx context.Context, after int64, limit int) ([]BuildsetOutcome, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id FROM buildsets WHERE id > $1 ORDER BY id LIMIT $2`,
		after, limit)
	if err != nil {
		return nil, fmt.Errorf("list buildsets after %d: %w", after, err)
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, err
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil || len(ids) == 0 {
		return nil, err
	}
	sets, err := s.Buildsets(ctx, ListOptions{Before: ids[len(ids)-1] + 1, Limit: len(ids)})
	if err != nil {
		return nil, err
	}
	out := make([]BuildsetOutcome, 0, len(sets))
	index := map[int64]int{}
	for i := len(sets) - 1; i >= 0; i-- {
		if sets[i].ID > after {
			index[sets[i].ID] = len(out)
			out = append(out, BuildsetOutcome{Buildset: sets[i]})
		}
	}
	rows, err = s.db.QueryContext(ctx, `SELECT r.buildset_id, b.name, r.state, bu.result
		FROM build_requests r JOIN builders b ON b.id = r.builder_id
		LEFT JOIN builds bu ON bu.id = r.build_id
		WHERE r.buildset_id > $1 AND r.buildset_id <= $2 ORDER BY r.id`, after, ids[len(ids)-1])
	if err != nil {
		return nil, fmt.Errorf("list requests of buildsets after %d: %w", after, err)
	}
	defer rows.Close()
	for rows.Next() {
		var bs int64
		var o RequestOutcome
		var result sql.NullString
		if err := rows.Scan(&bs, &o.Builder, &o.State, &result); err != nil {
			return nil, err
		}
		o.Result = result.String
		if i, ok := index[bs]; ok {
			out[i].Outcomes = append(out[i].Outcomes, o)
		}
	}
	return out, rows.Err()
}
