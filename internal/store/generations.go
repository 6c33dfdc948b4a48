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
	changed, err := s.changedPasswords(ctx, st, digests)
	if err != nil {
		return ApplyResult{}, err
	}
	// Hashing is deliberately slow: it runs on all cores while the rest of
	// the apply is encoded, and ends before the transaction begins, so no
	// write lock is held meanwhile.
	hashing := startHashing(ctx, changed)
	enc, encErr := encodeApply(st, digests)
	hashes, err := hashing.wait()
	if err == nil {
		err = encErr
	}
	if err != nil {
		return ApplyResult{}, err
	}
	hash, stateJSON := enc.contentHash, enc.state

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
		if err := r.builders(ctx, enc.rows.builders); err != nil {
			return err
		}
		if err := r.workers(ctx, enc.rows.workers, hashes); err != nil {
			return err
		}
		if _, err := r.entities(ctx, reposTable, enc.rows.repos); err != nil {
			return err
		}
		if err := r.schedulers(ctx, enc.rows.schedulers, s.nowSQL(), stamp); err != nil {
			return err
		}
		if err := r.recordLineage(ctx); err != nil {
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
// creating it on first use. The digest lets an apply tell an unchanged
// password without an Argon2id computation per worker. Keying it keeps a
// copy of the workers table alone useless for guessing passwords, but the
// key is in the same database: whoever holds a copy of all of it can test
// guesses at HMAC speed rather than Argon2id's, so worker passwords should
// be long random secrets, as generated ones are.
// TODO(#3): keep the key outside the database (the masters' secrets) once
// every applier, the CLI included, can be given it.
func (s *Store) digestKey(ctx context.Context) ([]byte, error) {
	var key []byte
	err := s.db.QueryRowContext(ctx, `SELECT digest_key FROM instance WHERE id = 1`).Scan(&key)
	if err == nil {
		return key, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("read instance key: %w", err)
	}
	fresh := make([]byte, 32)
	if _, err := rand.Read(fresh); err != nil {
		return nil, err
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO instance (id, digest_key, created_at)
		VALUES (1, $1, $2) ON CONFLICT (id) DO NOTHING`, fresh, micros(time.Now()))
	if err != nil {
		return nil, fmt.Errorf("create instance key: %w", err)
	}
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

// encodedApply is what an apply writes, encoded before its transaction.
type encodedApply struct {
	contentHash string
	state       []byte
	rows        desiredRows
}

// encodeApply encodes st for the generations and entity tables; digests
// are the workers' password digests by name.
func encodeApply(st *config.State, digests map[string]string) (encodedApply, error) {
	state, err := json.Marshal(st)
	if err != nil {
		return encodedApply{}, fmt.Errorf("encode desired state: %w", err)
	}
	rows, err := encodeDesired(st, digests)
	if err != nil {
		return encodedApply{}, err
	}
	hash := config.ContentHash(st, func(name, _ string) string { return digests[name] })
	return encodedApply{contentHash: hash, state: state, rows: rows}, nil
}

// changedPasswords returns the workers of st whose password differs from
// the stored one (new workers among them): the only ones to hash.
func (s *Store) changedPasswords(ctx context.Context, st *config.State, digests map[string]string) ([]config.Worker, error) {
	stored := map[string]string{}
	rows, err := s.db.QueryContext(ctx,
		`SELECT name, password_digest FROM workers WHERE retired_generation IS NULL`)
	if err != nil {
		return nil, fmt.Errorf("read worker digests: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var n, d string
		if err := rows.Scan(&n, &d); err != nil {
			return nil, fmt.Errorf("read worker digests: %w", err)
		}
		stored[n] = d
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read worker digests: %w", err)
	}
	var todo []config.Worker
	for _, w := range st.Workers {
		if stored[w.Name] != digests[w.Name] {
			todo = append(todo, w)
		}
	}
	return todo, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return slices.Clone(s)
}

// LastSourceAppliedBy returns the source of the newest generation that a
// clustered service applied under its fence, empty when it applied none.
// A configuration watcher that has just moved to another master compares
// its source with this, so that it applies the source when it changed, not
// again because it is new to the master (which would undo applies made
// meanwhile through the API or the CLI).
func (s *Store) LastSourceAppliedBy(ctx context.Context, service string) (string, error) {
	var source string
	err := s.db.QueryRowContext(ctx, `SELECT source FROM generations WHERE fence_service = $1
		ORDER BY number DESC LIMIT 1`, service).Scan(&source)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read the last source %s applied: %w", service, err)
	}
	return source, nil
}
