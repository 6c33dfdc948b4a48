package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// Cluster membership: master incarnations, their heartbeats on the
// database clock, leases such as the supervisor's, and the notifications
// that wake masters up. Clustered services and fencing are in
// cluster_services.go.

// Sentinel errors of the cluster.
var (
	// ErrNameTaken means a live incarnation already uses the master name.
	ErrNameTaken = errors.New("master name in use")
	// ErrMasterGone means the incarnation is no longer alive: it was
	// declared dead, or it stopped.
	ErrMasterGone = errors.New("master incarnation no longer alive")
	// ErrLeaseHeld means another live master holds the lease.
	ErrLeaseHeld = errors.New("lease held by another master")
	// ErrFenced means a write carried a fencing token that is no longer
	// current: the service or lease moved to another owner, or was
	// released.
	ErrFenced = errors.New("fenced: lease no longer held")
)

// Master states.
const (
	MasterAlive    = "alive"
	MasterDraining = "draining"
	MasterStopped  = "stopped"
	MasterDead     = "dead"
)

// SupervisorLease names the lease of the cluster's supervisor.
const SupervisorLease = "supervisor"

// Notification topics, the payloads sent on [NotifyChannel].
const (
	// NotifyChannel is the PostgreSQL channel masters LISTEN on.
	NotifyChannel = "regent"
	// TopicGeneration: a new generation was applied.
	TopicGeneration = "generation"
	// TopicRequest: build requests were created or became claimable.
	TopicRequest = "request"
	// TopicCancel: a build or request was cancelled.
	TopicCancel = "cancel"
	// TopicChange: new changes were recorded.
	TopicChange = "change"
	// TopicService: a clustered service changed owner, or a master
	// joined, drained, stopped or died.
	TopicService = "service"
)

// SessionLockClass is the first key of the session-scoped advisory lock
// that each master incarnation holds on PostgreSQL for as long as its
// database session lives; the second key is the incarnation id. A lock
// that is free means the session ended: the master crashed or was cut off.
const SessionLockClass = 0x52474e54 // "RGNT"

// SessionLockKey is the second key of the session lock of incarnation id:
// its low 32 bits.
func SessionLockKey(id int64) int32 { return int32(id) }

// PostgreSQL timeouts of the transactions that manage the cluster and of
// fenced writes. A transaction left open by a master that was paused or
// cut off mid-way would otherwise hold its row locks until the server
// noticed the broken connection, which may take hours, and block the
// supervisor moving the master's services away.
const (
	clusterLockTimeout = 2 * time.Second
	idleTxTimeout      = 2 * time.Second
)

// clusterLockKey serialises the transactions that change membership and
// ownership (joins, stops, supervisor rounds) on PostgreSQL.
const clusterLockKey = 7355610

// Master is one incarnation of a master process.
type Master struct {
	ID           int64      `json:"id"`
	Name         string     `json:"name"`
	Host         string     `json:"host"`
	Roles        []string   `json:"roles"`
	Tags         []string   `json:"tags"`
	Version      string     `json:"version"`
	ConfigSource string     `json:"config_source,omitempty"`
	State        string     `json:"state"`
	Reason       string     `json:"reason,omitempty"`
	StartedAt    time.Time  `json:"started_at"`
	LastSeen     time.Time  `json:"last_seen"`
	EndedAt      *time.Time `json:"ended_at"`
	// Supervisor tells whether the incarnation holds the supervisor lease.
	Supervisor bool `json:"supervisor"`
	// Services counts the clustered services it owns.
	Services int `json:"services"`
}

// Live reports whether the incarnation is alive or draining.
func (m Master) Live() bool { return m.State == MasterAlive || m.State == MasterDraining }

// HasRole reports whether the master was started with role r.
func (m Master) HasRole(r string) bool { return slices.Contains(m.Roles, r) }

// HasTags reports whether the master carries every tag in tags.
func (m Master) HasTags(tags []string) bool {
	for _, t := range tags {
		if !slices.Contains(m.Tags, t) {
			return false
		}
	}
	return true
}

// MasterInfo describes a master process joining the cluster.
type MasterInfo struct {
	// ID is the incarnation id reserved with [Store.NewMasterID], under
	// which the session lock is already held; 0 lets the database pick.
	ID           int64
	Name         string
	Host         string
	Roles        []string
	Tags         []string
	Version      string
	ConfigSource string
	// Replaces is the previous incarnation of the same process, which
	// fenced itself; it is declared dead in the same transaction.
	Replaces int64
}

// Lease is a lease as stored: its holder, fencing token and expiry on the
// database clock. The token grows at every acquisition.
type Lease struct {
	Name      string    `json:"name"`
	Holder    int64     `json:"holder"`
	Token     int64     `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
}

// querier is what *sql.DB and *sql.Tx have in common.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// nowSQL is an SQL expression for the database clock, in microseconds.
func (s *Store) nowSQL() string {
	if s.d.name == "postgres" {
		return `CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT)`
	}
	return `CAST(unixepoch('subsec') * 1000000 AS INTEGER)`
}

// dbNow reads the database clock in microseconds.
func (s *Store) dbNow(ctx context.Context, q querier) (int64, error) {
	var now int64
	if err := q.QueryRowContext(ctx, `SELECT `+s.nowSQL()).Scan(&now); err != nil {
		return 0, fmt.Errorf("read database clock: %w", err)
	}
	return now, nil
}

// clusterTx runs fn in a transaction that changes membership or
// ownership. On PostgreSQL such transactions run one at a time, give up
// waiting for a lock after a bound, and are ended by the server if their
// master goes silent in the middle.
func (s *Store) clusterTx(ctx context.Context, fn func(tx *sql.Tx, now int64) error) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if s.d.name == "postgres" {
			if err := boundTx(ctx, tx); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, clusterLockKey); err != nil {
				return fmt.Errorf("take the cluster lock: %w", err)
			}
		}
		now, err := s.dbNow(ctx, tx)
		if err != nil {
			return err
		}
		return fn(tx, now)
	})
}

// boundTx sets the PostgreSQL timeouts of a cluster or fenced transaction.
func boundTx(ctx context.Context, tx *sql.Tx) error {
	_, err := tx.ExecContext(ctx, fmt.Sprintf(`SET LOCAL lock_timeout = %d`,
		clusterLockTimeout.Milliseconds()))
	if err == nil {
		_, err = tx.ExecContext(ctx, fmt.Sprintf(`SET LOCAL idle_in_transaction_session_timeout = %d`,
			idleTxTimeout.Milliseconds()))
	}
	if err != nil {
		return fmt.Errorf("bound transaction: %w", err)
	}
	return nil
}

// SessionConn opens a connection of its own to the store's PostgreSQL
// database, outside the pool, with the pool's settings: a master holds
// its session lock and listens for notifications on it. It fails on
// SQLite.
func (s *Store) SessionConn(ctx context.Context) (*pgx.Conn, error) {
	if s.d.name != "postgres" {
		return nil, errors.New("session connection: only PostgreSQL has sessions")
	}
	c, err := s.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("session connection: %w", err)
	}
	defer c.Close()
	var cfg *pgx.ConnConfig
	err = c.Raw(func(dc any) error {
		sc, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("unexpected driver connection %T", dc)
		}
		cfg = sc.Conn().Config()
		// The copy delivers notifications to the pooled connection's
		// buffer; the new connection must keep its own.
		cfg.OnNotification = nil
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("session connection: %w", err)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("session connection: %w", err)
	}
	return conn, nil
}

// NewMasterID reserves an incarnation id on PostgreSQL, so that a master
// can take its session lock before its row exists: a row without a held
// lock is then always a dead master. It returns 0 on SQLite.
func (s *Store) NewMasterID(ctx context.Context) (int64, error) {
	if s.d.name != "postgres" {
		return 0, nil
	}
	var id int64
	err := s.db.QueryRowContext(ctx, `SELECT nextval(pg_get_serial_sequence('masters', 'id'))`).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("reserve master id: %w", err)
	}
	return id, nil
}

// JoinMaster records a new incarnation of a master, alive as of the
// database clock. A live incarnation of the same name whose heartbeat is
// older than ttl, or whose session lock is free, is declared dead first;
// one that is still alive makes the join fail with [ErrNameTaken].
func (s *Store) JoinMaster(ctx context.Context, in MasterInfo, ttl time.Duration) (Master, error) {
	if in.Name == "" {
		return Master{}, errors.New("join cluster: the master has no name")
	}
	roles, _ := json.Marshal(nonNil(in.Roles))
	tags, _ := json.Marshal(nonNil(in.Tags))
	processEnded := false
	if s.d.name == "sqlite" {
		// SQLite has no sessions; a lock file held by the process stands
		// in for one, so a master killed outright can restart at once.
		held, fresh, err := s.names.lock(s.path, in.Name)
		if err != nil {
			return Master{}, fmt.Errorf("join cluster as %q: %w", in.Name, err)
		}
		if !held {
			return Master{}, fmt.Errorf("join cluster as %q: %w: another process on this machine runs a master "+
				"of that name on %s; stop it or start this one with another --name", in.Name, ErrNameTaken, s.path)
		}
		processEnded = fresh
	}
	var m Master
	err := s.clusterTx(ctx, func(tx *sql.Tx, now int64) error {
		if in.Replaces != 0 {
			if _, err := s.endMaster(ctx, tx, in.Replaces, MasterDead,
				"replaced by a new incarnation of the same process", now); err != nil {
				return err
			}
		}
		if err := s.freeName(ctx, tx, in.Name, ttl, now, processEnded); err != nil {
			return err
		}
		var id int64
		cols, vals, args := ``, ``, []any{in.Name, in.Host, string(roles), string(tags),
			in.Version, in.ConfigSource, MasterAlive, now}
		if in.ID != 0 {
			cols, vals, args = `id, `, `$9, `, append(args, in.ID)
		}
		err := tx.QueryRowContext(ctx, `INSERT INTO masters (`+cols+`name, host, roles, tags,
			version, config_source, state, started_at, last_seen)
			VALUES (`+vals+`$1, $2, $3, $4, $5, $6, $7, $8, $8) RETURNING id`, args...).Scan(&id)
		if isUniqueViolation(err) {
			return fmt.Errorf("%w: another master of that name joined at the same moment", ErrNameTaken)
		}
		if err != nil {
			return fmt.Errorf("insert master %q: %w", in.Name, err)
		}
		m, err = scanMaster(tx.QueryRowContext(ctx, `SELECT `+masterColumns+` FROM masters WHERE id = $1`, id))
		if err != nil {
			return err
		}
		return s.notify(ctx, tx, TopicService)
	})
	if err != nil {
		return Master{}, fmt.Errorf("join cluster as %q: %w", in.Name, err)
	}
	return m, nil
}

// freeName declares dead the live incarnations named name that expired or
// lost their session, and fails with ErrNameTaken if one is still alive.
// processEnded says the caller knows every earlier process of that name
// has ended (on SQLite it holds the name's lock file).
func (s *Store) freeName(ctx context.Context, tx *sql.Tx, name string, ttl time.Duration, now int64, processEnded bool) error {
	rows, err := tx.QueryContext(ctx, `SELECT id, host, last_seen FROM masters
		WHERE name = $1 AND state IN ('alive', 'draining') ORDER BY id`, name)
	if err != nil {
		return fmt.Errorf("read masters named %q: %w", name, err)
	}
	type live struct {
		id       int64
		host     string
		lastSeen int64
	}
	var found []live
	for rows.Next() {
		var l live
		if err := rows.Scan(&l.id, &l.host, &l.lastSeen); err != nil {
			rows.Close()
			return err
		}
		found = append(found, l)
	}
	rows.Close()
	if err := rows.Err(); err != nil || len(found) == 0 {
		return err
	}
	held, err := s.heldSessions(ctx, tx)
	if err != nil {
		return err
	}
	for _, l := range found {
		reason := deathReason(l.id, l.lastSeen, now, ttl, held)
		if reason == "" && processEnded {
			reason = "its process ended"
		}
		if reason == "" {
			age := time.Duration(now-l.lastSeen) * time.Microsecond
			return fmt.Errorf("%w: incarnation %d on host %q was seen %s ago and is alive; "+
				"stop that master, start this one with another --name, or wait until it "+
				"has been silent for %s", ErrNameTaken, l.id, l.host, age.Round(time.Millisecond), ttl)
		}
		if _, err := s.endMaster(ctx, tx, l.id, MasterDead, reason, now); err != nil {
			return err
		}
	}
	return nil
}

// deathReason says why a live incarnation is dead, or "" if it is alive:
// its heartbeat is older than ttl, or (when held is not nil, on
// PostgreSQL) its session lock is free.
func deathReason(id, lastSeen, now int64, ttl time.Duration, held map[int64]bool) string {
	if now-lastSeen > ttl.Microseconds() {
		age := time.Duration(now-lastSeen) * time.Microsecond
		return fmt.Sprintf("no heartbeat for %s (time-to-live %s)", age.Round(time.Millisecond), ttl)
	}
	if held != nil && !held[id&0xffffffff] {
		return "database session ended"
	}
	return ""
}

// heldSessions returns the second keys of the session locks held in this
// database, as unsigned numbers (an incarnation's id modulo 2^32), or nil
// on SQLite, which has no sessions.
func (s *Store) heldSessions(ctx context.Context, q querier) (map[int64]bool, error) {
	if s.d.name != "postgres" {
		return nil, nil
	}
	rows, err := q.QueryContext(ctx, fmt.Sprintf(`SELECT objid::bigint FROM pg_locks
		WHERE locktype = 'advisory' AND classid = %d AND objsubid = 2 AND granted
		AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
		SessionLockClass))
	if err != nil {
		return nil, fmt.Errorf("read session locks: %w", err)
	}
	defer rows.Close()
	held := map[int64]bool{}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		held[id] = true
	}
	return held, rows.Err()
}

// endMaster moves a live incarnation to state (stopped or dead) and
// releases what it held: its services and its leases. It returns the
// number of services released; nothing happens to an incarnation already
// ended.
func (s *Store) endMaster(ctx context.Context, tx *sql.Tx, id int64, state, reason string, now int64) (int, error) {
	res, err := tx.ExecContext(ctx, `UPDATE masters SET state = $2, reason = $3, ended_at = $4
		WHERE id = $1 AND state IN ('alive', 'draining')`, id, state, reason, now)
	if err != nil {
		return 0, fmt.Errorf("end master %d: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return 0, nil
	}
	released, err := s.releaseServices(ctx, tx, id)
	if err != nil {
		return 0, err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE leases SET holder = NULL, expires_at = 0
		WHERE holder = $1`, id); err != nil {
		return 0, fmt.Errorf("release leases of master %d: %w", id, err)
	}
	return released, s.notify(ctx, tx, TopicService)
}

// releaseServices takes every service of master id away from it, each
// with a new token whose grant to nobody it records, and returns how many
// there were.
func (s *Store) releaseServices(ctx context.Context, tx *sql.Tx, id int64) (int, error) {
	rows, err := tx.QueryContext(ctx, `UPDATE services SET owner = NULL, owned_since = NULL,
		token = token + 1 WHERE owner = $1 RETURNING name, token`, id)
	if err != nil {
		return 0, fmt.Errorf("release services of master %d: %w", id, err)
	}
	var released []Fence
	for rows.Next() {
		var f Fence
		if err := rows.Scan(&f.Service, &f.Token); err != nil {
			rows.Close()
			return 0, fmt.Errorf("release services of master %d: %w", id, err)
		}
		released = append(released, f)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("release services of master %d: %w", id, err)
	}
	for _, f := range released {
		if err := s.recordGrant(ctx, tx, f.Service, f.Token, 0); err != nil {
			return 0, err
		}
	}
	return len(released), nil
}

// Heartbeat records, on the database clock, that the incarnation id is
// alive, and returns the services it owns. It fails with [ErrMasterGone]
// once the incarnation was declared dead or stopped.
func (s *Store) Heartbeat(ctx context.Context, id int64) ([]Fence, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE masters SET last_seen = `+s.nowSQL()+`
		WHERE id = $1 AND state IN ('alive', 'draining')`, id)
	if err != nil {
		return nil, fmt.Errorf("heartbeat of master %d: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		var state, reason string
		err := s.db.QueryRowContext(ctx, `SELECT state, reason FROM masters WHERE id = $1`, id).
			Scan(&state, &reason)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("heartbeat of master %d: %w", id, err)
		}
		return nil, fmt.Errorf("heartbeat of master %d: %w (state %q: %s)", id, ErrMasterGone, state, reason)
	}
	return s.OwnedServices(ctx, id)
}

// DrainMaster marks a live incarnation draining: the supervisor moves its
// services to other masters and gives it no new ones.
func (s *Store) DrainMaster(ctx context.Context, id int64) error {
	res, err := s.db.ExecContext(ctx, `UPDATE masters SET state = 'draining'
		WHERE id = $1 AND state IN ('alive', 'draining')`, id)
	if err != nil {
		return fmt.Errorf("drain master %d: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("drain master %d: %w", id, ErrMasterGone)
	}
	return s.Notify(ctx, TopicService)
}

// EndMaster ends a live incarnation, as stopped (a clean shutdown) or dead
// (a master fencing itself), releasing its services and leases at once.
// Ending an incarnation already ended does nothing.
func (s *Store) EndMaster(ctx context.Context, id int64, state, reason string) error {
	if state != MasterStopped && state != MasterDead {
		return fmt.Errorf("end master %d: state %q is not %q or %q", id, state, MasterStopped, MasterDead)
	}
	err := s.clusterTx(ctx, func(tx *sql.Tx, now int64) error {
		_, err := s.endMaster(ctx, tx, id, state, reason, now)
		return err
	})
	if err != nil {
		return fmt.Errorf("end master %d: %w", id, err)
	}
	return nil
}

// AcquireLease takes the lease name for the live incarnation id, or renews
// it if id holds it already, until ttl from now on the database clock. It
// fails with [ErrLeaseHeld] while another live master holds it. A lease is
// free when it expired, when its holder is no longer live, or, on
// PostgreSQL, when its holder's session ended. Each acquisition increments
// the token. A draining master may renew a lease it holds but not take one.
func (s *Store) AcquireLease(ctx context.Context, name string, id int64, ttl time.Duration) (Lease, error) {
	var out Lease
	err := s.clusterTx(ctx, func(tx *sql.Tx, now int64) error {
		var state string
		var lastSeen int64
		err := tx.QueryRowContext(ctx, `SELECT state, last_seen FROM masters WHERE id = $1`, id).
			Scan(&state, &lastSeen)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if state != MasterAlive && state != MasterDraining || now-lastSeen > ttl.Microseconds() {
			return fmt.Errorf("master %d: %w", id, ErrMasterGone)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO leases (name) VALUES ($1)
			ON CONFLICT (name) DO NOTHING`, name); err != nil {
			return err
		}
		var holder sql.NullInt64
		l := Lease{Name: name}
		var expires int64
		err = tx.QueryRowContext(ctx, `SELECT holder, token, expires_at FROM leases WHERE name = $1`,
			name).Scan(&holder, &l.Token, &expires)
		if err != nil {
			return err
		}
		if holder.Int64 != id {
			if state != MasterAlive {
				return fmt.Errorf("master %d is draining: %w", id, ErrLeaseHeld)
			}
			free, err := s.leaseFree(ctx, tx, holder, expires, ttl, now)
			if err != nil {
				return err
			}
			if !free {
				out = Lease{Name: name, Holder: holder.Int64, Token: l.Token, ExpiresAt: fromMicros(expires)}
				return ErrLeaseHeld
			}
			l.Token++
		}
		l.Holder, l.ExpiresAt = id, fromMicros(now+ttl.Microseconds())
		_, err = tx.ExecContext(ctx, `UPDATE leases SET holder = $2, token = $3, expires_at = $4,
			acquired_at = CASE WHEN holder = $2 THEN acquired_at ELSE $5 END WHERE name = $1`,
			name, id, l.Token, micros(l.ExpiresAt), now)
		out = l
		return err
	})
	if errors.Is(err, ErrLeaseHeld) && out.Holder != 0 {
		return out, fmt.Errorf("lease %s held by master %d: %w", name, out.Holder, ErrLeaseHeld)
	}
	if err != nil {
		return out, fmt.Errorf("acquire lease %s for master %d: %w", name, id, err)
	}
	return out, nil
}

// leaseFree reports whether a lease held by holder until expires may be
// taken at now.
func (s *Store) leaseFree(ctx context.Context, tx *sql.Tx, holder sql.NullInt64, expires int64, ttl time.Duration, now int64) (bool, error) {
	if !holder.Valid || expires <= now {
		return true, nil
	}
	var state string
	var lastSeen int64
	err := tx.QueryRowContext(ctx, `SELECT state, last_seen FROM masters WHERE id = $1`, holder.Int64).
		Scan(&state, &lastSeen)
	if errors.Is(err, sql.ErrNoRows) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	if state != MasterAlive && state != MasterDraining {
		return true, nil
	}
	held, err := s.heldSessions(ctx, tx)
	if err != nil {
		return false, err
	}
	return deathReason(holder.Int64, lastSeen, now, ttl, held) != "", nil
}

// ReleaseLease gives up a lease that l still holds, so that another master
// may take it at once.
func (s *Store) ReleaseLease(ctx context.Context, l Lease) error {
	_, err := s.db.ExecContext(ctx, `UPDATE leases SET holder = NULL, expires_at = 0
		WHERE name = $1 AND holder = $2 AND token = $3`, l.Name, l.Holder, l.Token)
	if err != nil {
		return fmt.Errorf("release lease %s: %w", l.Name, err)
	}
	return nil
}

// CurrentLease returns the lease name as stored; a lease never taken has
// holder 0.
func (s *Store) CurrentLease(ctx context.Context, name string) (Lease, error) {
	l := Lease{Name: name}
	var holder sql.NullInt64
	var expires int64
	err := s.db.QueryRowContext(ctx, `SELECT holder, token, expires_at FROM leases WHERE name = $1`,
		name).Scan(&holder, &l.Token, &expires)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return Lease{}, fmt.Errorf("read lease %s: %w", name, err)
	}
	l.Holder, l.ExpiresAt = holder.Int64, fromMicros(expires)
	return l, nil
}

// masterColumns lists the columns scanMaster reads, in order.
const masterColumns = `id, name, host, roles, tags, version, config_source, state, reason,
	started_at, last_seen, ended_at`

// scanMaster reads one row selected with masterColumns.
func scanMaster(row interface{ Scan(...any) error }) (Master, error) {
	var m Master
	var roles, tags string
	var started, seen int64
	var ended sql.NullInt64
	err := row.Scan(&m.ID, &m.Name, &m.Host, &roles, &tags, &m.Version, &m.ConfigSource,
		&m.State, &m.Reason, &started, &seen, &ended)
	if err != nil {
		return Master{}, err
	}
	if err := json.Unmarshal([]byte(roles), &m.Roles); err != nil {
		return Master{}, fmt.Errorf("decode roles of master %d: %w", m.ID, err)
	}
	if err := json.Unmarshal([]byte(tags), &m.Tags); err != nil {
		return Master{}, fmt.Errorf("decode tags of master %d: %w", m.ID, err)
	}
	m.StartedAt, m.LastSeen, m.EndedAt = fromMicros(started), fromMicros(seen), nullTime(ended)
	return m, nil
}

// Masters lists the live incarnations (alive and draining) by name, or,
// with all, every incarnation recorded, newest first. Each says whether it
// holds the supervisor lease and how many services it owns.
func (s *Store) Masters(ctx context.Context, all bool) ([]Master, error) {
	return s.masters(ctx, s.db, all)
}

func (s *Store) masters(ctx context.Context, q querier, all bool) ([]Master, error) {
	where, order := `WHERE state IN ('alive', 'draining')`, `name, id`
	if all {
		where, order = ``, `id DESC`
	}
	rows, err := q.QueryContext(ctx, `SELECT `+masterColumns+`,
		(SELECT count(*) FROM services WHERE owner = masters.id),
		(SELECT count(*) FROM leases WHERE name = 'supervisor' AND holder = masters.id)
		FROM masters `+where+` ORDER BY `+order)
	if err != nil {
		return nil, fmt.Errorf("list masters: %w", err)
	}
	defer rows.Close()
	out := []Master{}
	for rows.Next() {
		var services, supervisor int
		m, err := scanMaster(scanFunc(func(dest ...any) error {
			return rows.Scan(append(dest, &services, &supervisor)...)
		}))
		if err != nil {
			return nil, fmt.Errorf("list masters: %w", err)
		}
		m.Services, m.Supervisor = services, supervisor > 0
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list masters: %w", err)
	}
	return out, nil
}

// scanFunc adapts a function to the Scan method of a row.
type scanFunc func(dest ...any) error

func (f scanFunc) Scan(dest ...any) error { return f(dest...) }

// PruneMasters deletes incarnations that ended more than age ago on the
// database clock, as housekeeping does under fence f. It returns how many
// were deleted.
func (s *Store) PruneMasters(ctx context.Context, f Fence, age time.Duration) (int, error) {
	var n int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if err := s.checkFence(ctx, tx, f); err != nil {
			return err
		}
		now, err := s.dbNow(ctx, tx)
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM masters WHERE state IN ('stopped', 'dead')
			AND ended_at < $1 AND id NOT IN (SELECT owner FROM services WHERE owner IS NOT NULL)`,
			now-age.Microseconds())
		if err != nil {
			return err
		}
		n, _ = res.RowsAffected()
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("prune ended masters: %w", err)
	}
	return int(n), nil
}

// notify sends topic on NotifyChannel when tx commits, on PostgreSQL;
// SQLite has a single master, which wakes itself.
func (s *Store) notify(ctx context.Context, tx *sql.Tx, topic string) error {
	if s.d.name != "postgres" {
		return nil
	}
	if _, err := tx.ExecContext(ctx, `SELECT pg_notify($1, $2)`, NotifyChannel, topic); err != nil {
		return fmt.Errorf("notify %s: %w", topic, err)
	}
	return nil
}

// Notify sends topic to every master listening, at once, on PostgreSQL.
func (s *Store) Notify(ctx context.Context, topic string) error {
	if s.d.name != "postgres" {
		return nil
	}
	if _, err := s.db.ExecContext(ctx, `SELECT pg_notify($1, $2)`, NotifyChannel, topic); err != nil {
		return fmt.Errorf("notify %s: %w", topic, err)
	}
	return nil
}

// isUniqueViolation reports whether err is a unique-constraint failure.
func isUniqueViolation(err error) bool {
	if err == nil {
		return false
	}
	msg := err.Error()
	return strings.Contains(msg, "SQLSTATE 23505") || strings.Contains(msg, "UNIQUE constraint failed")
}
