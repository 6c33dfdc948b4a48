package store

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/regent-ci/regent/internal/config"
)

// workerColumns are the columns of workers an apply inserts, besides the
// generations.
var workerColumns = []string{"name", "password_hash", "password_digest", "max_builds", "tags"}

// activeWorker is an active row of workers, as far as an apply compares it.
type activeWorker struct {
	id        int64
	name      string
	digest    string
	maxBuilds int
	tags      string
}

func (r *reconciler) activeWorkers(ctx context.Context) (map[string]activeWorker, error) {
	rows, err := r.tx.QueryContext(ctx, `SELECT id, name, password_digest, max_builds, tags
		FROM workers WHERE retired_generation IS NULL`)
	if err != nil {
		return nil, fmt.Errorf("read active workers: %w", err)
	}
	defer rows.Close()
	out := map[string]activeWorker{}
	for rows.Next() {
		var a activeWorker
		if err := rows.Scan(&a.id, &a.name, &a.digest, &a.maxBuilds, &a.tags); err != nil {
			return nil, fmt.Errorf("read active workers: %w", err)
		}
		out[a.name] = a
	}
	return out, rows.Err()
}

// workers reconciles the workers. A worker whose password is unchanged
// keeps its hash, and its row is written only if its settings changed; a
// new password ends the worker's sessions; a removed worker is retired and
// its sessions and running builds end. hashes are the hashes of the
// passwords that differed from the stored ones before the transaction.
func (r *reconciler) workers(ctx context.Context, want []workerRow, hashes map[string]string) error {
	have, err := r.activeWorkers(ctx)
	if err != nil {
		return err
	}
	var settings, passwords []workerUpdate
	var fresh []workerRow
	for _, w := range want {
		a, ok := have[w.Name]
		delete(have, w.Name)
		switch {
		case ok && a.digest == w.digest:
			if a.maxBuilds != w.MaxBuilds || a.tags != w.tags {
				settings = append(settings, workerUpdate{id: a.id, w: w})
			}
		case ok:
			passwords = append(passwords, workerUpdate{id: a.id, w: w})
		default:
			fresh = append(fresh, w)
		}
	}
	inserts, revived, err := splitRevived(ctx, r, "workers", fresh, func(w workerRow) string { return w.Name })
	if err != nil {
		return err
	}
	for id, w := range revived {
		passwords = append(passwords, workerUpdate{id: id, w: w})
	}
	slices.SortFunc(passwords, func(a, b workerUpdate) int { return cmp.Compare(a.id, b.id) })
	if err := r.completeHashes(ctx, hashes, passwords, inserts); err != nil {
		return err
	}
	for _, u := range passwords {
		r.passwordsStored = append(r.passwordsStored, u.w.Name)
	}
	for _, w := range inserts {
		r.passwordsStored = append(r.passwordsStored, w.Name)
	}

	for _, u := range settings {
		if _, err := r.exec(ctx, `UPDATE workers SET max_builds = $1, tags = $2,
			updated_generation = $3 WHERE id = $4`, u.w.MaxBuilds, u.w.tags, r.gen, u.id); err != nil {
			return fmt.Errorf("store worker %q: %w", u.w.Name, err)
		}
	}
	for _, u := range passwords {
		if err := r.storePassword(ctx, u, hashes[u.w.Name]); err != nil {
			return err
		}
	}
	values := make([][]any, len(inserts))
	for i, w := range inserts {
		values[i] = []any{w.Name, hashes[w.Name], w.digest, w.MaxBuilds, w.tags}
	}
	if err := r.insert(ctx, "workers", workerColumns, values); err != nil {
		return err
	}
	return r.retireWorkers(ctx, have)
}

// retireWorkers retires the workers of have and ends their sessions and
// running builds.
func (r *reconciler) retireWorkers(ctx context.Context, have map[string]activeWorker) error {
	removed := make(map[string]activeRow, len(have))
	for name, a := range have {
		removed[name] = activeRow{id: a.id, name: a.name}
	}
	gone := byID(removed)
	if err := r.retire(ctx, "workers", gone); err != nil {
		return err
	}
	for _, a := range gone {
		reason := fmt.Sprintf("worker %q was removed from the configuration in generation %d", a.name, r.gen)
		if err := r.revokeSessions(ctx, a.id, reason, true); err != nil {
			return err
		}
	}
	return nil
}

// workerUpdate is an existing worker row, active or retired, to be given
// w's password and settings.
type workerUpdate struct {
	id int64
	w  workerRow
}

// completeHashes adds to hashes those of the workers to be written whose
// password changed after the digests were read before the transaction,
// by a concurrent apply: rare, and then hashed here.
func (r *reconciler) completeHashes(ctx context.Context, hashes map[string]string, updates []workerUpdate,
	inserts []workerRow) error {
	var missing []config.Worker
	for _, u := range updates {
		if _, ok := hashes[u.w.Name]; !ok {
			missing = append(missing, u.w.Worker)
		}
	}
	for _, w := range inserts {
		if _, ok := hashes[w.Name]; !ok {
			missing = append(missing, w.Worker)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	more, err := hashPasswords(ctx, missing)
	if err != nil {
		return err
	}
	for name, h := range more {
		hashes[name] = h
	}
	return nil
}

// storePassword writes a worker's new password hash and settings, and ends
// its live sessions.
func (r *reconciler) storePassword(ctx context.Context, u workerUpdate, hash string) error {
	_, err := r.exec(ctx, `UPDATE workers SET password_hash = $1, password_digest = $2,
		max_builds = $3, tags = $4, updated_generation = $5, retired_generation = NULL
		WHERE id = $6`, hash, u.w.digest, u.w.MaxBuilds, u.w.tags, r.gen, u.id)
	if err != nil {
		return fmt.Errorf("store worker %q: %w", u.w.Name, err)
	}
	reason := fmt.Sprintf("the password of worker %q changed in generation %d", u.w.Name, r.gen)
	return r.revokeSessions(ctx, u.id, reason, false)
}

// revokeSessions ends the worker's live sessions. The builds of a
// removed worker end with it; those of a worker whose password changed
// stay running, for the worker to take over once it logs in again with the
// new password.
func (r *reconciler) revokeSessions(ctx context.Context, workerID int64, reason string, removed bool) error {
	ids, err := sessionIDs(ctx, r.tx, `worker_id = $1 AND state = $2`, workerID, SessionActive)
	if err != nil {
		return err
	}
	for _, id := range ids {
		_, err := r.exec(ctx, `UPDATE worker_sessions SET state = $1, reason = $2,
			ended_at = $3 WHERE id = $4`, SessionRevoked, reason, r.now, id)
		if err != nil {
			return fmt.Errorf("revoke session %d: %w", id, err)
		}
		if removed {
			if err := loseSessionBuilds(ctx, r.tx, id, reason, r.now); err != nil {
				return err
			}
		}
	}
	r.revoked += len(ids)
	return nil
}
