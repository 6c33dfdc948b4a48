package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/regent-ci/regent/internal/config"
)

// lineage is what the plan of a stored generation needs besides the
// desired states, which hold no password and name no retired builder. It
// is kept with each generation (generations.lineage) by the apply that
// made it.
//
// Whether a worker's password changed between two generations is told
// without keeping anything derived from a password: a worker's password
// differs between generations from and to when an apply in between stored
// it (a new password, or the worker brought back from retirement, which
// hashes its password again and revokes its sessions). A password changed
// and changed back in between counts as changed, which it was.
type lineage struct {
	// Passwords are the workers whose password the apply stored: new
	// ones, those whose password changed, and those brought back.
	Passwords []string `json:"passwords_stored,omitempty"`
	// Revived maps each builder that took over the history of a retired
	// builder named in its previous_names to that builder's name.
	Revived map[string]string `json:"revived,omitempty"`
}

// recordLineage stores, with the generation being applied, the lineage
// that the reconciliation found.
func (r *reconciler) recordLineage(ctx context.Context) error {
	b, err := json.Marshal(lineage{Passwords: r.passwordsStored, Revived: r.revived})
	if err != nil {
		return fmt.Errorf("encode the lineage of generation %d: %w", r.gen, err)
	}
	if _, err := r.tx.ExecContext(ctx, `UPDATE generations SET lineage = $1 WHERE number = $2`,
		string(b), r.gen); err != nil {
		return fmt.Errorf("store the lineage of generation %d: %w", r.gen, err)
	}
	return nil
}

// Plan returns what applying st over the active generation would change,
// as Apply would make it: a worker's password counts as changed when its
// digest differs from the stored one, and a builder whose previous_names
// names a retired builder is shown taking over its history.
func (s *Store) Plan(ctx context.Context, st *config.State) (config.Plan, error) {
	_, active, err := s.ActiveState(ctx)
	if errors.Is(err, ErrNotFound) {
		return config.Diff(nil, st), nil
	}
	if err != nil {
		return config.Plan{}, err
	}
	key, err := s.digestKey(ctx)
	if err != nil {
		return config.Plan{}, err
	}
	digests := make(map[string]string, len(st.Workers))
	for _, w := range st.Workers {
		digests[w.Name] = passwordDigest(key, w.Name, w.Password)
	}
	differ, err := s.changedPasswords(ctx, st, digests)
	if err != nil {
		return config.Plan{}, err
	}
	changed := map[string]bool{}
	for _, w := range differ {
		changed[w.Name] = true
	}
	revived, err := s.retiredTakeOvers(ctx, active, st)
	if err != nil {
		return config.Plan{}, err
	}
	return config.DiffWith(active, st, config.DiffOptions{
		PasswordChanged: func(w string) bool { return changed[w] },
		Revived:         revived,
	}), nil
}

// retiredTakeOvers returns the builders of st that an apply over active
// would give the history of a retired builder named in their
// previous_names, mapped to that name: those neither active themselves
// nor renamed from an active builder, as reconcile decides.
func (s *Store) retiredTakeOvers(ctx context.Context, active, st *config.State) (map[string]string, error) {
	activeNames, wanted := map[string]bool{}, map[string]bool{}
	for _, b := range active.Builders {
		activeNames[b.Name] = true
	}
	for _, b := range st.Builders {
		wanted[b.Name] = true
	}
	var candidates []config.Builder
	var names []string
	for _, b := range st.Builders {
		renamed := slices.ContainsFunc(b.PreviousNames, func(p string) bool { return activeNames[p] && !wanted[p] })
		if activeNames[b.Name] || renamed {
			continue
		}
		candidates = append(candidates, b)
		for _, p := range b.PreviousNames {
			if !wanted[p] {
				names = append(names, p)
			}
		}
	}
	if len(names) == 0 {
		return nil, nil
	}
	retired, err := retiredRows(ctx, s.db, "builders", names)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	claimed := map[string]bool{}
	for _, b := range candidates {
		i := slices.IndexFunc(b.PreviousNames, func(p string) bool {
			_, ok := retired[p]
			return ok && !wanted[p] && !claimed[p]
		})
		if i >= 0 {
			out[b.Name], claimed[b.PreviousNames[i]] = b.PreviousNames[i], true
		}
	}
	return out, nil
}

// GenerationPlan returns what applying generation to over generation from
// changed; from 0 stands for no configuration, so the plan of the first
// generation adds everything. Password changes and builders taking over a
// retired builder's history come from the lineage the applies in between
// kept; generations applied before lineage was kept show neither.
func (s *Store) GenerationPlan(ctx context.Context, from, to int64) (config.Plan, error) {
	newState, err := s.generationState(ctx, to)
	if err != nil {
		return config.Plan{}, err
	}
	oldState := &config.State{}
	if from != 0 {
		if oldState, err = s.generationState(ctx, from); err != nil {
			return config.Plan{}, err
		}
	}
	rows, err := s.db.QueryContext(ctx, `SELECT lineage FROM generations WHERE number > $1
		AND number <= $2 AND lineage IS NOT NULL`, min(from, to), max(from, to))
	if err != nil {
		return config.Plan{}, fmt.Errorf("read the lineage of generations %d to %d: %w", from, to, err)
	}
	defer rows.Close()
	stored, revived := map[string]bool{}, map[string]string{}
	for rows.Next() {
		var raw string
		var l lineage
		if err := rows.Scan(&raw); err != nil {
			return config.Plan{}, fmt.Errorf("read lineage: %w", err)
		}
		if err := json.Unmarshal([]byte(raw), &l); err != nil {
			return config.Plan{}, fmt.Errorf("decode lineage: %w", err)
		}
		for _, w := range l.Passwords {
			stored[w] = true
		}
		for n, old := range l.Revived {
			revived[n] = old
		}
	}
	if err := rows.Err(); err != nil {
		return config.Plan{}, fmt.Errorf("read lineage: %w", err)
	}
	if from > to {
		revived = nil // a take-over is a step forwards only
	}
	return config.DiffWith(oldState, newState, config.DiffOptions{
		PasswordChanged: func(w string) bool { return stored[w] },
		Revived:         revived,
	}), nil
}

// generationState returns the desired state of generation n.
func (s *Store) generationState(ctx context.Context, n int64) (*config.State, error) {
	var raw string
	err := s.db.QueryRowContext(ctx, `SELECT state FROM generations WHERE number = $1`, n).Scan(&raw)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("generation %d: %w", n, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read generation %d: %w", n, err)
	}
	var st config.State
	if err := json.Unmarshal([]byte(raw), &st); err != nil {
		return nil, fmt.Errorf("decode generation %d: %w", n, err)
	}
	return &st, nil
}
