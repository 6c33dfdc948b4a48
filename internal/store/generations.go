package store

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/regent-ci/regent/internal/config"
)

// ApplyResult says what an apply did.
type ApplyResult struct {
	Generation Generation
	// Created is false when the content matched the active generation and
	// nothing was written.
	Created bool
	// CancelledRequests counts pending build requests of removed builders.
	CancelledRequests int
	// RevokedSessions counts worker sessions whose credentials ended.
	RevokedSessions int
}

// Apply stores st as a new generation and makes it the active one, all in
// one transaction: entities absent from st are retired (keeping their
// history), builders declared with previous_names are renamed, pending
// build requests of removed builders are cancelled with a reason, and the
// sessions of removed or re-passworded workers are revoked. Applying
// content identical to the active generation writes nothing.
func (s *Store) Apply(ctx context.Context, st *config.State, source, appliedBy string) (ApplyResult, error) {
	return s.ApplyFenced(ctx, st, source, appliedBy, Fence{})
}

// ApplyFenced is Apply for the configuration watcher service: the apply
// happens only while fence is still held, checked in the same transaction,
// so a watcher that was replaced can never apply. It fails with ErrFenced
// otherwise. The zero Fence applies unconditionally.
func (s *Store) ApplyFenced(ctx context.Context, st *config.State, source, appliedBy string, fence Fence) (ApplyResult, error) {
	key, err := s.digestKey(ctx)
	if err != nil {
		return ApplyResult{}, err
	}
	digests := make(map[string]string, len(st.Workers))
	for _, w := range st.Workers {
		digests[w.Name] = passwordDigest(key, w.Name, w.Password)
	}
	hash := config.ContentHash(st, func(name, _ string) string { return digests[name] })
	hashes, err := s.hashChangedPasswords(ctx, st, digests)
	if err != nil {
		return ApplyResult{}, err
	}
	stateJSON, err := json.Marshal(st)
	if err != nil {
		return ApplyResult{}, fmt.Errorf("encode desired state: %w", err)
	}

	var res ApplyResult
	err = s.tx(ctx, func(tx *sql.Tx) error {
		if s.d.name == "postgres" {
			// One apply at a time across the cluster, so generation
			// numbers and retirements never interleave.
			if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(7355609)`); err != nil {
				return err
			}
		}
		stamp, err := s.stampFence(ctx, tx, fence)
		if err != nil {
			return err
		}
		active, err := activeGeneration(ctx, tx)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		if err == nil && active.ContentHash == hash {
			res.Generation = active
			return nil
		}
		g := Generation{
			Number:      active.Number + 1,
			ContentHash: hash,
			Source:      source,
			AppliedBy:   appliedBy,
			AppliedAt:   time.Now().UTC(),
			State:       stateJSON,
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO generations (number, content_hash, source,
			applied_by, applied_at, state, fence_service, fence_token, fenced_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			g.Number, g.ContentHash, g.Source, g.AppliedBy, micros(g.AppliedAt), string(stateJSON),
			stamp.service, stamp.token, stamp.at)
		if err != nil {
			return fmt.Errorf("insert generation %d: %w", g.Number, err)
		}
		r := reconciler{tx: tx, gen: g.Number, now: micros(g.AppliedAt)}
		if err := r.builders(ctx, st.Builders); err != nil {
			return err
		}
		if err := r.workers(ctx, st.Workers, digests, hashes); err != nil {
			return err
		}
		if err := r.repos(ctx, st.Repos); err != nil {
			return err
		}
		if err := r.schedulers(ctx, st.Schedulers); err != nil {
			return err
		}
		res = ApplyResult{Generation: g, Created: true,
			CancelledRequests: r.cancelled, RevokedSessions: r.revoked}
		return s.notify(ctx, tx, TopicGeneration)
	})
	if err != nil {
		return ApplyResult{}, fmt.Errorf("apply configuration: %w", err)
	}
	return res, nil
}

// ActiveGeneration returns the newest generation, or ErrNotFound on a
// database where no configuration was ever applied.
func (s *Store) ActiveGeneration(ctx context.Context) (Generation, error) {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: s.d.name == "postgres"})
	if err != nil {
		return Generation{}, err
	}
	defer tx.Rollback()
	return activeGeneration(ctx, tx)
}

// ActiveState returns the active generation's desired state.
func (s *Store) ActiveState(ctx context.Context) (Generation, *config.State, error) {
	g, err := s.ActiveGeneration(ctx)
	if err != nil {
		return Generation{}, nil, err
	}
	var st config.State
	if err := json.Unmarshal(g.State, &st); err != nil {
		return Generation{}, nil, fmt.Errorf("decode generation %d: %w", g.Number, err)
	}
	return g, &st, nil
}

// ActiveGenerationNumber is a cheap check for a new generation.
func (s *Store) ActiveGenerationNumber(ctx context.Context) (int64, error) {
	var n sql.NullInt64
	err := s.db.QueryRowContext(ctx, `SELECT max(number) FROM generations`).Scan(&n)
	return n.Int64, err
}

// Generations lists generations newest first, without their states.
func (s *Store) Generations(ctx context.Context, before int64, limit int) ([]Generation, error) {
	if before <= 0 {
		before = 1 << 62
	}
	rows, err := s.db.QueryContext(ctx, `SELECT number, content_hash, source, applied_by, applied_at
		FROM generations WHERE number < $1 ORDER BY number DESC LIMIT $2`, before, limit)
	if err != nil {
		return nil, fmt.Errorf("list generations: %w", err)
	}
	defer rows.Close()
	var out []Generation
	for rows.Next() {
		var g Generation
		var at int64
		if err := rows.Scan(&g.Number, &g.ContentHash, &g.Source, &g.AppliedBy, &at); err != nil {
			return nil, err
		}
		g.AppliedAt = fromMicros(at)
		out = append(out, g)
	}
	return out, rows.Err()
}

// GenerationByNumber returns one generation with its state.
func (s *Store) GenerationByNumber(ctx context.Context, n int64) (Generation, error) {
	return scanGeneration(s.db.QueryRowContext(ctx, `SELECT number, content_hash, source,
		applied_by, applied_at, state FROM generations WHERE number = $1`, n))
}

func activeGeneration(ctx context.Context, tx *sql.Tx) (Generation, error) {
	return scanGeneration(tx.QueryRowContext(ctx, `SELECT number, content_hash, source,
		applied_by, applied_at, state FROM generations ORDER BY number DESC LIMIT 1`))
}

func scanGeneration(row *sql.Row) (Generation, error) {
	var g Generation
	var at int64
	var state string
	err := row.Scan(&g.Number, &g.ContentHash, &g.Source, &g.AppliedBy, &at, &state)
	if errors.Is(err, sql.ErrNoRows) {
		return Generation{}, ErrNotFound
	}
	if err != nil {
		return Generation{}, fmt.Errorf("read generation: %w", err)
	}
	g.AppliedAt = fromMicros(at)
	g.State = json.RawMessage(state)
	return g, nil
}

// digestKey returns the installation's random key for password digests,
// creating it on first use. Digests are keyed so that the deterministic
// digest kept for change detection cannot be attacked offline without it.
func (s *Store) digestKey(ctx context.Context) ([]byte, error) {
	fresh := make([]byte, 32)
	if _, err := rand.Read(fresh); err != nil {
		return nil, err
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO instance (id, digest_key, created_at)
		VALUES (1, $1, $2) ON CONFLICT (id) DO NOTHING`, fresh, micros(time.Now()))
	if err != nil {
		return nil, fmt.Errorf("create instance key: %w", err)
	}
	var key []byte
	if err := s.db.QueryRowContext(ctx, `SELECT digest_key FROM instance WHERE id = 1`).Scan(&key); err != nil {
		return nil, fmt.Errorf("read instance key: %w", err)
	}
	return key, nil
}

func passwordDigest(key []byte, name, password string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(name))
	m.Write([]byte{0})
	m.Write([]byte(password))
	return hex.EncodeToString(m.Sum(nil))
}

// hashChangedPasswords computes salted hashes for the workers whose
// password differs from the stored one. Hashing is deliberately slow, so
// it runs before the transaction and only where needed.
func (s *Store) hashChangedPasswords(ctx context.Context, st *config.State, digests map[string]string) (map[string]string, error) {
	stored := map[string]string{}
	rows, err := s.db.QueryContext(ctx,
		`SELECT name, password_digest FROM workers WHERE retired_generation IS NULL`)
	if err != nil {
		return nil, fmt.Errorf("read worker digests: %w", err)
	}
	for rows.Next() {
		var n, d string
		if err := rows.Scan(&n, &d); err != nil {
			rows.Close()
			return nil, err
		}
		stored[n] = d
	}
	rows.Close()
	var todo []config.Worker
	for _, w := range st.Workers {
		if stored[w.Name] != digests[w.Name] {
			todo = append(todo, w)
		}
	}
	return hashPasswords(todo), nil
}

// reconciler applies one desired state to the entity tables inside the
// apply transaction.
type reconciler struct {
	tx        *sql.Tx
	gen       int64
	now       int64
	cancelled int
	revoked   int
}

type activeRow struct {
	id   int64
	name string
	spec string
}

func (r *reconciler) active(ctx context.Context, table, specCol string) (map[string]activeRow, error) {
	rows, err := r.tx.QueryContext(ctx, `SELECT id, name, `+specCol+` FROM `+table+
		` WHERE retired_generation IS NULL`)
	if err != nil {
		return nil, fmt.Errorf("read active %s: %w", table, err)
	}
	defer rows.Close()
	out := map[string]activeRow{}
	for rows.Next() {
		var a activeRow
		if err := rows.Scan(&a.id, &a.name, &a.spec); err != nil {
			return nil, err
		}
		out[a.name] = a
	}
	return out, rows.Err()
}

// revive brings back the most recently retired row of a table with the
// given name, so that a name that returns keeps its history.
func (r *reconciler) revive(ctx context.Context, table, name string) (int64, bool, error) {
	var id int64
	err := r.tx.QueryRowContext(ctx, `SELECT id FROM `+table+` WHERE name = $1
		AND retired_generation IS NOT NULL ORDER BY retired_generation DESC, id DESC LIMIT 1`,
		name).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	_, err = r.tx.ExecContext(ctx, `UPDATE `+table+` SET retired_generation = NULL WHERE id = $1`, id)
	return id, err == nil, err
}

func (r *reconciler) retire(ctx context.Context, table string, id int64) error {
	_, err := r.tx.ExecContext(ctx, `UPDATE `+table+` SET retired_generation = $1 WHERE id = $2`, r.gen, id)
	if err != nil {
		return fmt.Errorf("retire %s %d: %w", table, id, err)
	}
	return nil
}

func (r *reconciler) builders(ctx context.Context, want []config.Builder) error {
	have, err := r.active(ctx, "builders", "spec")
	if err != nil {
		return err
	}
	wanted := map[string]bool{}
	for _, b := range want {
		wanted[b.Name] = true
	}
	for _, b := range want {
		spec, err := json.Marshal(b)
		if err != nil {
			return err
		}
		tags, _ := json.Marshal(nonNil(b.Tags))
		id, found := int64(0), false
		if a, ok := have[b.Name]; ok && a.spec == string(spec) {
			delete(have, b.Name) // unchanged: nothing to write
			continue
		} else if ok {
			id, found = a.id, true
			delete(have, b.Name)
		} else if prev, ok := renamedFrom(b, have, wanted); ok {
			id, found = prev.id, true
			delete(have, prev.name)
		} else if id, found, err = r.revive(ctx, "builders", b.Name); err != nil {
			return err
		}
		if found {
			_, err = r.tx.ExecContext(ctx, `UPDATE builders SET name = $1, description = $2,
				tags = $3, spec = $4, updated_generation = $5 WHERE id = $6`,
				b.Name, b.Description, string(tags), string(spec), r.gen, id)
		} else {
			_, err = r.tx.ExecContext(ctx, `INSERT INTO builders (name, description, tags, spec,
				created_generation, updated_generation) VALUES ($1, $2, $3, $4, $5, $5)`,
				b.Name, b.Description, string(tags), string(spec), r.gen)
		}
		if err != nil {
			return fmt.Errorf("store builder %q: %w", b.Name, err)
		}
	}
	for _, a := range have {
		if err := r.retire(ctx, "builders", a.id); err != nil {
			return err
		}
		reason := fmt.Sprintf("builder %q was removed from the configuration in generation %d", a.name, r.gen)
		res, err := r.tx.ExecContext(ctx, `UPDATE build_requests SET state = $1, reason = $2,
			completed_at = $3 WHERE builder_id = $4 AND state = $5`,
			RequestCancelled, reason, r.now, a.id, RequestPending)
		if err != nil {
			return fmt.Errorf("cancel requests of builder %q: %w", a.name, err)
		}
		n, _ := res.RowsAffected()
		r.cancelled += int(n)
	}
	return nil
}

// renamedFrom finds the active builder that b declares as a previous name,
// provided that name is not itself still wanted.
func renamedFrom(b config.Builder, have map[string]activeRow, wanted map[string]bool) (activeRow, bool) {
	for _, p := range b.PreviousNames {
		if a, ok := have[p]; ok && !wanted[p] {
			return a, true
		}
	}
	return activeRow{}, false
}

func (r *reconciler) workers(ctx context.Context, want []config.Worker, digests, hashes map[string]string) error {
	have, err := r.active(ctx, "workers", "password_digest")
	if err != nil {
		return err
	}
	for _, w := range want {
		tags, _ := json.Marshal(nonNil(w.Tags))
		a, ok := have[w.Name]
		delete(have, w.Name)
		if ok && a.spec == digests[w.Name] {
			_, err = r.tx.ExecContext(ctx, `UPDATE workers SET max_builds = $1, tags = $2,
				updated_generation = $3 WHERE id = $4`, w.MaxBuilds, string(tags), r.gen, a.id)
			if err != nil {
				return fmt.Errorf("store worker %q: %w", w.Name, err)
			}
			continue
		}
		hash, ok2 := hashes[w.Name]
		if !ok2 {
			// The password changed between the read before the
			// transaction and now; hash it here.
			hash = hashPasswords([]config.Worker{w})[w.Name]
		}
		id, found := a.id, ok
		if !found {
			if id, found, err = r.revive(ctx, "workers", w.Name); err != nil {
				return err
			}
		}
		if found {
			_, err = r.tx.ExecContext(ctx, `UPDATE workers SET password_hash = $1,
				password_digest = $2, max_builds = $3, tags = $4, updated_generation = $5
				WHERE id = $6`, hash, digests[w.Name], w.MaxBuilds, string(tags), r.gen, id)
		} else {
			_, err = r.tx.ExecContext(ctx, `INSERT INTO workers (name, password_hash,
				password_digest, max_builds, tags, created_generation, updated_generation)
				VALUES ($1, $2, $3, $4, $5, $6, $6)`,
				w.Name, hash, digests[w.Name], w.MaxBuilds, string(tags), r.gen)
		}
		if err != nil {
			return fmt.Errorf("store worker %q: %w", w.Name, err)
		}
		if found {
			reason := fmt.Sprintf("the password of worker %q changed in generation %d", w.Name, r.gen)
			if err := r.revokeSessions(ctx, id, reason, false); err != nil {
				return err
			}
		}
	}
	for _, a := range have {
		if err := r.retire(ctx, "workers", a.id); err != nil {
			return err
		}
		reason := fmt.Sprintf("worker %q was removed from the configuration in generation %d", a.name, r.gen)
		if err := r.revokeSessions(ctx, a.id, reason, true); err != nil {
			return err
		}
	}
	return nil
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
		_, err := r.tx.ExecContext(ctx, `UPDATE worker_sessions SET state = $1, reason = $2,
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

func (r *reconciler) repos(ctx context.Context, want []config.Repo) error {
	specs := make([]named, len(want))
	for i, x := range want {
		specs[i] = named{name: x.Name, extra: x.URL, value: x}
	}
	return r.simple(ctx, "repos", "url", specs)
}

func (r *reconciler) schedulers(ctx context.Context, want []config.Scheduler) error {
	specs := make([]named, len(want))
	for i, x := range want {
		specs[i] = named{name: x.Name, extra: x.Kind, value: x}
	}
	return r.simple(ctx, "schedulers", "kind", specs)
}

// named is an entity of a table reconciled by name alone: its name, the
// value of the table's one extra column, and the definition kept as spec.
type named struct {
	name  string
	extra any
	value any
}

// simple reconciles a table whose rows are matched by name only and carry
// one extra column beside the spec.
func (r *reconciler) simple(ctx context.Context, table, extraCol string, want []named) error {
	have, err := r.active(ctx, table, "spec")
	if err != nil {
		return err
	}
	for _, n := range want {
		b, err := json.Marshal(n.value)
		if err != nil {
			return err
		}
		spec, x := string(b), n.extra
		a, ok := have[n.name]
		delete(have, n.name)
		if ok && a.spec == spec {
			continue // unchanged: nothing to write
		}
		id, found := a.id, ok
		if !found {
			if id, found, err = r.revive(ctx, table, n.name); err != nil {
				return err
			}
		}
		if found {
			_, err = r.tx.ExecContext(ctx, `UPDATE `+table+` SET spec = $1, `+extraCol+` = $2,
				updated_generation = $3 WHERE id = $4`, spec, x, r.gen, id)
		} else {
			_, err = r.tx.ExecContext(ctx, `INSERT INTO `+table+` (name, `+extraCol+`, spec,
				created_generation, updated_generation) VALUES ($1, $2, $3, $4, $4)`,
				n.name, x, spec, r.gen)
		}
		if err != nil {
			return fmt.Errorf("store %s %q: %w", table, n.name, err)
		}
	}
	for _, a := range have {
		if err := r.retire(ctx, table, a.id); err != nil {
			return err
		}
	}
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return slices.Clone(s)
}
