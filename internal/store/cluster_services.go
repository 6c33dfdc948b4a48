package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Clustered services, their owners and fencing tokens, and the
// supervisor's round that assigns them.

// Service states.
const (
	ServiceActive  = "active"
	ServiceRetired = "retired"
)

// Fence is the proof of ownership a clustered service carries into its
// writes: the service's name and the token it was given with it. A write
// under a fence succeeds only while the service still has that token, so
// an owner that was replaced (its master paused, cut off or declared dead)
// cannot write any more. The zero Fence marks a write made outside any
// clustered service, which is never refused.
type Fence struct {
	Service string `json:"service"`
	Token   int64  `json:"token"`
}

// String formats the fence as service@token.
func (f Fence) String() string { return fmt.Sprintf("%s@%d", f.Service, f.Token) }

// Service is a clustered service as stored.
type Service struct {
	Name string `json:"name"`
	Kind string `json:"kind"`
	// MasterTags are the tags a master must all carry to own the service.
	MasterTags []string `json:"master_tags"`
	State      string   `json:"state"`
	// Owner is the owning master's name, OwnerID its incarnation; both
	// nil while nobody owns the service.
	Owner       *string    `json:"owner"`
	OwnerID     *int64     `json:"owner_incarnation"`
	Token       int64      `json:"token"`
	OwnedSince  *time.Time `json:"owned_since"`
	LastSuccess *time.Time `json:"last_success"`
	LastError   string     `json:"last_error"`
	LastErrorAt *time.Time `json:"last_error_at"`
}

// ServiceSpec is a clustered service the active generation asks for.
type ServiceSpec struct {
	Name string
	Kind string
	// MasterTags are the tags a master must all carry to own it.
	MasterTags []string
}

// Placement is the supervisor's decision for one service: its owner, or 0
// for none.
type Placement struct {
	ServiceSpec
	Owner int64
}

// ClusterView is what the supervisor sees in one round, after the dead
// masters were declared dead and their services released.
type ClusterView struct {
	// Now is the database clock.
	Now time.Time
	// Masters are the live incarnations, alive and draining.
	Masters []Master
	// Services are the services not retired.
	Services []Service
}

// ServiceMove is a change of a service's owner made by a round; 0 stands
// for nobody.
type ServiceMove struct {
	Service  string
	From, To int64
	// FromName and ToName are the masters' names, "" for nobody.
	FromName, ToName string
	Token            int64
}

// SuperviseResult says what a supervisor round changed.
type SuperviseResult struct {
	// Dead are the masters declared dead, with the reason.
	Dead    []Master
	Moves   []ServiceMove
	Retired []string
}

// Changed reports whether the round changed anything.
func (r SuperviseResult) Changed() bool {
	return len(r.Dead)+len(r.Moves)+len(r.Retired) > 0
}

// serviceColumns lists the columns scanService reads, in order.
const serviceColumns = `s.name, s.kind, s.master_tags, s.state, s.owner, m.name, s.token,
	s.owned_since, s.last_success, s.last_error, s.last_error_at`

const serviceFrom = ` FROM services s LEFT JOIN masters m ON m.id = s.owner`

// scanService reads one row selected with serviceColumns and serviceFrom.
func scanService(row interface{ Scan(...any) error }) (Service, error) {
	var sv Service
	var tags string
	var owner, since, success, errAt sql.NullInt64
	var ownerName sql.NullString
	err := row.Scan(&sv.Name, &sv.Kind, &tags, &sv.State, &owner, &ownerName, &sv.Token,
		&since, &success, &sv.LastError, &errAt)
	if err != nil {
		return Service{}, err
	}
	if err := json.Unmarshal([]byte(tags), &sv.MasterTags); err != nil {
		return Service{}, fmt.Errorf("decode tags of service %s: %w", sv.Name, err)
	}
	if owner.Valid {
		sv.OwnerID, sv.Owner = &owner.Int64, &ownerName.String
	}
	sv.OwnedSince, sv.LastSuccess, sv.LastErrorAt = nullTime(since), nullTime(success), nullTime(errAt)
	return sv, nil
}

// Services lists the clustered services by name: those of the active
// generation, and with includeRetired those it no longer has too.
func (s *Store) Services(ctx context.Context, includeRetired bool) ([]Service, error) {
	return s.services(ctx, s.db, includeRetired)
}

func (s *Store) services(ctx context.Context, q querier, includeRetired bool) ([]Service, error) {
	where := ` WHERE s.state = 'active'`
	if includeRetired {
		where = ``
	}
	rows, err := q.QueryContext(ctx, `SELECT `+serviceColumns+serviceFrom+where+` ORDER BY s.name`)
	if err != nil {
		return nil, fmt.Errorf("list services: %w", err)
	}
	defer rows.Close()
	out := []Service{}
	for rows.Next() {
		sv, err := scanService(rows)
		if err != nil {
			return nil, fmt.Errorf("list services: %w", err)
		}
		out = append(out, sv)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list services: %w", err)
	}
	return out, nil
}

// OwnedServices returns the fences of the services the incarnation id
// owns, by name.
func (s *Store) OwnedServices(ctx context.Context, id int64) ([]Fence, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name, token FROM services
		WHERE owner = $1 AND state = 'active' ORDER BY name`, id)
	if err != nil {
		return nil, fmt.Errorf("services of master %d: %w", id, err)
	}
	defer rows.Close()
	out := []Fence{}
	for rows.Next() {
		var f Fence
		if err := rows.Scan(&f.Service, &f.Token); err != nil {
			return nil, fmt.Errorf("services of master %d: %w", id, err)
		}
		out = append(out, f)
	}
	return out, rows.Err()
}

// checkFence makes the transaction tx conditional on f: it fails with
// [ErrFenced] unless the service still has f's token and an owner, and
// otherwise records the write as the service's latest success. It takes
// the service's row lock, so the owner cannot change until tx ends: call
// it first in a transaction, before any other write. The zero Fence is
// not checked.
func (s *Store) checkFence(ctx context.Context, tx *sql.Tx, f Fence) error {
	if f.Service == "" {
		return nil
	}
	if s.d.name == "postgres" {
		if err := boundTx(ctx, tx); err != nil {
			return err
		}
	}
	res, err := tx.ExecContext(ctx, `UPDATE services SET last_success = `+s.nowSQL()+`
		WHERE name = $1 AND token = $2 AND owner IS NOT NULL AND state = 'active'`,
		f.Service, f.Token)
	if err != nil {
		return fmt.Errorf("check fence %s: %w", f, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("service %s no longer held with token %d: %w", f.Service, f.Token, ErrFenced)
	}
	return nil
}

// ServiceSucceeded records that the service holding f finished a run of
// its work, such as a poll that found nothing new. It fails with
// [ErrFenced] when f is no longer current.
func (s *Store) ServiceSucceeded(ctx context.Context, f Fence) error {
	return s.tx(ctx, func(tx *sql.Tx) error { return s.checkFence(ctx, tx, f) })
}

// ServiceFailed records the error of a failed run of the service holding
// f. It fails with [ErrFenced] when f is no longer current.
func (s *Store) ServiceFailed(ctx context.Context, f Fence, msg string) error {
	res, err := s.db.ExecContext(ctx, `UPDATE services SET last_error = $3, last_error_at = `+
		s.nowSQL()+` WHERE name = $1 AND token = $2 AND owner IS NOT NULL AND state = 'active'`,
		f.Service, f.Token, msg)
	if err != nil {
		return fmt.Errorf("record error of service %s: %w", f, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("service %s no longer held with token %d: %w", f.Service, f.Token, ErrFenced)
	}
	return nil
}

// Supervise runs one round of the supervisor holding lease, in one
// transaction that fails with [ErrFenced] if the lease was lost: it renews
// the lease until ttl from now, declares dead the live masters whose
// heartbeat is older than ttl or whose session ended, releasing what they
// held, then asks plan where each service of the active generation goes
// and makes it so. A service whose owner changes gets a new token; a
// service that plan leaves out is retired.
func (s *Store) Supervise(ctx context.Context, lease Lease, ttl time.Duration, plan func(ClusterView) []Placement) (SuperviseResult, error) {
	var res SuperviseResult
	err := s.clusterTx(ctx, func(tx *sql.Tx, now int64) error {
		res = SuperviseResult{}
		if err := s.renewHeld(ctx, tx, lease, ttl, now); err != nil {
			return err
		}
		before, err := s.masters(ctx, tx, false)
		if err != nil {
			return err
		}
		if res.Dead, err = s.declareDead(ctx, tx, before, lease.Holder, ttl, now); err != nil {
			return err
		}
		view := ClusterView{Now: fromMicros(now)}
		if view.Masters, err = s.masters(ctx, tx, false); err != nil {
			return err
		}
		if view.Services, err = s.services(ctx, tx, false); err != nil {
			return err
		}
		placements := plan(view)
		if err := checkPlacements(placements, view.Masters); err != nil {
			return err
		}
		names := map[int64]string{}
		for _, m := range before {
			names[m.ID] = m.Name
		}
		if err := s.applyPlacements(ctx, tx, placements, names, now, &res); err != nil {
			return err
		}
		if res.Changed() {
			return s.notify(ctx, tx, TopicService)
		}
		return nil
	})
	if err != nil {
		return SuperviseResult{}, fmt.Errorf("supervise as master %d: %w", lease.Holder, err)
	}
	return res, nil
}

// renewHeld extends lease, failing with ErrFenced if it is no longer held
// with its token or its holder is no longer alive.
func (s *Store) renewHeld(ctx context.Context, tx *sql.Tx, l Lease, ttl time.Duration, now int64) error {
	var state string
	var lastSeen int64
	err := tx.QueryRowContext(ctx, `SELECT state, last_seen FROM masters WHERE id = $1`, l.Holder).
		Scan(&state, &lastSeen)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	if state != MasterAlive && state != MasterDraining || now-lastSeen > ttl.Microseconds() {
		return fmt.Errorf("holder of lease %s is no longer alive: %w", l.Name, ErrFenced)
	}
	r, err := tx.ExecContext(ctx, `UPDATE leases SET expires_at = $4 WHERE name = $1 AND holder = $2
		AND token = $3 AND expires_at > $5`, l.Name, l.Holder, l.Token, now+ttl.Microseconds(), now)
	if err != nil {
		return fmt.Errorf("renew lease %s: %w", l.Name, err)
	}
	if n, _ := r.RowsAffected(); n == 0 {
		return fmt.Errorf("lease %s with token %d: %w", l.Name, l.Token, ErrFenced)
	}
	return nil
}

// declareDead ends the masters, other than self, that stopped
// heartbeating or lost their session, and returns them.
func (s *Store) declareDead(ctx context.Context, tx *sql.Tx, live []Master, self int64, ttl time.Duration, now int64) ([]Master, error) {
	held, err := s.heldSessions(ctx, tx)
	if err != nil {
		return nil, err
	}
	var dead []Master
	for _, m := range live {
		reason := deathReason(m.ID, micros(m.LastSeen), now, ttl, held)
		if m.ID == self || reason == "" {
			continue
		}
		if _, err := s.endMaster(ctx, tx, m.ID, MasterDead, reason, now); err != nil {
			return nil, err
		}
		m.State, m.Reason = MasterDead, reason
		dead = append(dead, m)
	}
	return dead, nil
}

// checkPlacements refuses a plan that names a service twice or gives one
// to a master that is not live: such a plan is a bug in the supervisor.
func checkPlacements(ps []Placement, live []Master) error {
	ids := map[int64]bool{}
	for _, m := range live {
		ids[m.ID] = true
	}
	seen := map[string]bool{}
	for _, p := range ps {
		switch {
		case p.Name == "" || p.Kind == "":
			return fmt.Errorf("placement %+v has no name or kind", p)
		case seen[p.Name]:
			return fmt.Errorf("service %s placed twice", p.Name)
		case p.Owner != 0 && !ids[p.Owner]:
			return fmt.Errorf("service %s placed on master %d, which is not live", p.Name, p.Owner)
		}
		seen[p.Name] = true
	}
	return nil
}

// storedService is a services row as applyPlacements needs it.
type storedService struct {
	kind, tags, state string
	owner             int64
}

// applyPlacements makes the services table match ps, recording what
// changed in res.
func (s *Store) applyPlacements(ctx context.Context, tx *sql.Tx, ps []Placement, names map[int64]string, now int64, res *SuperviseResult) error {
	stored, err := storedServices(ctx, tx)
	if err != nil {
		return err
	}
	ps = slices.SortedFunc(slices.Values(ps), func(a, b Placement) int { return strings.Compare(a.Name, b.Name) })
	wanted := map[string]bool{}
	for _, p := range ps {
		wanted[p.Name] = true
		tags, _ := json.Marshal(nonNil(p.MasterTags))
		row, ok := stored[p.Name]
		switch {
		case !ok:
			_, err = tx.ExecContext(ctx, `INSERT INTO services (name, kind, master_tags, state,
				token, created_at) VALUES ($1, $2, $3, 'active', 0, $4)`, p.Name, p.Kind, string(tags), now)
		case row.state != ServiceActive:
			// Back after its retirement: a new service under an old name,
			// whose health starts afresh.
			_, err = tx.ExecContext(ctx, `UPDATE services SET kind = $2, master_tags = $3,
				state = 'active', retired_at = NULL, last_success = NULL, last_error = '',
				last_error_at = NULL WHERE name = $1`, p.Name, p.Kind, string(tags))
		case row.kind != p.Kind || row.tags != string(tags):
			_, err = tx.ExecContext(ctx, `UPDATE services SET kind = $2, master_tags = $3
				WHERE name = $1`, p.Name, p.Kind, string(tags))
		}
		if err != nil {
			return fmt.Errorf("record service %s: %w", p.Name, err)
		}
		if row.owner == p.Owner {
			continue
		}
		token, err := s.setOwner(ctx, tx, p.Name, p.Owner, now)
		if err != nil {
			return err
		}
		res.Moves = append(res.Moves, ServiceMove{Service: p.Name, From: row.owner, To: p.Owner,
			FromName: names[row.owner], ToName: names[p.Owner], Token: token})
	}
	for _, name := range slices.Sorted(maps.Keys(stored)) {
		if wanted[name] || stored[name].state == ServiceRetired {
			continue
		}
		var token int64
		err := tx.QueryRowContext(ctx, `UPDATE services SET state = 'retired', retired_at = $2,
			owner = NULL, owned_since = NULL, token = token + 1 WHERE name = $1 RETURNING token`,
			name, now).Scan(&token)
		if err != nil {
			return fmt.Errorf("retire service %s: %w", name, err)
		}
		if err := s.recordGrant(ctx, tx, name, token, 0); err != nil {
			return err
		}
		res.Retired = append(res.Retired, name)
	}
	return nil
}

// setOwner gives a service to owner (0 for nobody) with a new token,
// records the grant, and returns the token.
func (s *Store) setOwner(ctx context.Context, tx *sql.Tx, name string, owner, now int64) (int64, error) {
	o, since := sql.NullInt64{Int64: owner, Valid: owner != 0}, sql.NullInt64{Int64: now, Valid: owner != 0}
	var token int64
	err := tx.QueryRowContext(ctx, `UPDATE services SET owner = $2, owned_since = $3,
		token = token + 1 WHERE name = $1 RETURNING token`, name, o, since).Scan(&token)
	if err != nil {
		return 0, fmt.Errorf("move service %s to master %d: %w", name, owner, err)
	}
	return token, s.recordGrant(ctx, tx, name, token, owner)
}

// storedServices reads every services row, retired ones included.
func storedServices(ctx context.Context, tx *sql.Tx) (map[string]storedService, error) {
	rows, err := tx.QueryContext(ctx, `SELECT name, kind, master_tags, state, owner FROM services`)
	if err != nil {
		return nil, fmt.Errorf("read services: %w", err)
	}
	defer rows.Close()
	out := map[string]storedService{}
	for rows.Next() {
		var name string
		var row storedService
		var owner sql.NullInt64
		if err := rows.Scan(&name, &row.kind, &row.tags, &row.state, &owner); err != nil {
			return nil, fmt.Errorf("read services: %w", err)
		}
		row.owner = owner.Int64
		out[name] = row
	}
	return out, rows.Err()
}

// ClusterCounts are the cluster's figures for monitoring.
type ClusterCounts struct {
	// LiveMasters counts incarnations alive or draining.
	LiveMasters int
	// SupervisorTerms counts the acquisitions of the supervisor lease:
	// its token.
	SupervisorTerms int64
	// ServiceMoves counts the changes of owner of every service: the sum
	// of their tokens, which only grow.
	ServiceMoves int64
	// UnownedServices counts the services of the active generation
	// without an owner.
	UnownedServices int
}

// ClusterCounts reads the cluster's figures in one query.
func (s *Store) ClusterCounts(ctx context.Context) (ClusterCounts, error) {
	var c ClusterCounts
	var moves sql.NullInt64
	err := s.db.QueryRowContext(ctx, `SELECT
		(SELECT count(*) FROM masters WHERE state IN ('alive', 'draining')),
		COALESCE((SELECT token FROM leases WHERE name = 'supervisor'), 0),
		(SELECT sum(token) FROM services),
		(SELECT count(*) FROM services WHERE state = 'active' AND owner IS NULL)`).
		Scan(&c.LiveMasters, &c.SupervisorTerms, &moves, &c.UnownedServices)
	if err != nil {
		return ClusterCounts{}, fmt.Errorf("count the cluster: %w", err)
	}
	c.ServiceMoves = moves.Int64
	return c, nil
}
