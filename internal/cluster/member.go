package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/regent-ci/regent/internal/store"
)

// Defaults for the zero values of [MemberConfig].
const (
	DefaultTTL               = 10 * time.Second
	DefaultHeartbeatInterval = time.Second
)

// Errors that callers branch on.
var (
	// ErrStarted means Start was called on a member already started.
	ErrStarted = errors.New("member already started")
	// ErrStopped means Start was called on a member already stopped.
	ErrStopped = errors.New("member stopped")
)

// MemberConfig configures a [Member].
type MemberConfig struct {
	Store *store.Store
	// Name is the master's name, unique among live masters; the host name
	// when empty.
	Name string
	// Host is where the master runs; the host name when empty.
	Host string
	// Roles are the master's roles; DefaultRoles when empty.
	Roles []string
	// Tags are matched against the tags a service is pinned to.
	Tags    []string
	Version string
	// ConfigSource is the configuration source this master offers to the
	// cluster, if any; only masters offering one may own the
	// configuration watcher.
	ConfigSource string
	// TTL is the time-to-live: a master whose heartbeat is older than
	// that on the database clock is dead. DefaultTTL when zero.
	TTL time.Duration
	// HeartbeatInterval is how often the heartbeat is renewed;
	// DefaultHeartbeatInterval when zero, and at most a third of TTL.
	HeartbeatInterval time.Duration
	// FenceMargin is how long before TTL runs out, by this process's own
	// clock, the member gives up its services if it could not renew its
	// heartbeat. A fifth of TTL when zero.
	FenceMargin time.Duration
	// Wakes are notified when a notification of their topic (such as
	// store.TopicRequest) arrives from another master, and all of them
	// after the member (re)joins, since notifications may have been
	// missed meanwhile. PostgreSQL only.
	Wakes map[string]*Wake
	// OnFence is called when the member gives up its services because
	// it can no longer prove it is alive: it must stop every clustered
	// service of this master before it returns. Services held by the
	// previous incarnation are then owned by nobody (or someone else);
	// the member rejoins as a new incarnation.
	OnFence func(reason string)
	// Logger receives the member's logs; slog.Default() when nil.
	Logger *slog.Logger
}

// Member is a master's membership of the cluster: its incarnation, its
// heartbeat and the services it owns. See the package documentation for
// the states it goes through.
type Member struct {
	cfg     MemberConfig
	log     *slog.Logger
	owned   *Wake
	refresh chan struct{} // asks the loop to read the owned services now

	mu       sync.Mutex
	inc      *incarnation // nil while not joined
	services []store.Fence
	replaces int64     // the last incarnation, which fenced itself
	renewed  time.Time // when the last heartbeat that succeeded was sent
	draining bool
	started  bool
	stopped  bool
	cancel   context.CancelFunc
	done     chan struct{}
}

// incarnation is one joined life of a member.
type incarnation struct {
	id int64
	// renewed is when the last heartbeat that succeeded was sent, by the
	// monotonic clock: the database saw the master alive after it.
	renewed time.Time
	session *session // nil on SQLite
}

// NewMember checks cfg, fills its defaults and returns a member that does
// nothing until Start.
func NewMember(cfg MemberConfig) (*Member, error) {
	if cfg.Store == nil {
		return nil, errors.New("cluster member: no store")
	}
	host, _ := os.Hostname()
	if cfg.Name == "" {
		cfg.Name = host
	}
	if cfg.Host == "" {
		cfg.Host = host
	}
	if len(cfg.Roles) == 0 {
		cfg.Roles = DefaultRoles
	}
	for _, r := range cfg.Roles {
		if !slices.Contains(DefaultRoles, r) {
			return nil, fmt.Errorf("cluster member %s: unknown role %q (roles are %v)", cfg.Name, r, DefaultRoles)
		}
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = min(DefaultHeartbeatInterval, cfg.TTL/3)
	}
	if cfg.FenceMargin == 0 {
		cfg.FenceMargin = cfg.TTL / 5
	}
	switch {
	case cfg.Name == "":
		return nil, errors.New("cluster member: no name and no host name")
	case cfg.TTL < 0 || cfg.HeartbeatInterval < 0 || cfg.FenceMargin < 0:
		return nil, fmt.Errorf("cluster member %s: negative duration", cfg.Name)
	case cfg.HeartbeatInterval+cfg.FenceMargin >= cfg.TTL:
		return nil, fmt.Errorf("cluster member %s: heartbeat interval %s plus fence margin %s must be "+
			"less than the time-to-live %s", cfg.Name, cfg.HeartbeatInterval, cfg.FenceMargin, cfg.TTL)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Member{cfg: cfg, owned: NewWake(), refresh: make(chan struct{}, 1),
		log: cfg.Logger.With("component", "cluster", "master", cfg.Name)}, nil
}

// Name returns the master's name.
func (m *Member) Name() string { return m.cfg.Name }

// TTL returns the time-to-live.
func (m *Member) TTL() time.Duration { return m.cfg.TTL }

// Store returns the store the member records itself in.
func (m *Member) Store() *store.Store { return m.cfg.Store }

// Incarnation returns the id of the current incarnation, or 0 while the
// member is not joined (before Start, after Stop, and between fencing
// itself and rejoining).
func (m *Member) Incarnation() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.inc == nil {
		return 0
	}
	return m.inc.id
}

// Owned returns the fences of the services this master owns, by name, as
// of the last heartbeat or notification.
func (m *Member) Owned() []store.Fence {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.services)
}

// HeartbeatAge returns how long ago the last heartbeat that succeeded was
// sent, by this process's clock; 0 while the member is not joined.
func (m *Member) HeartbeatAge() time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.inc == nil {
		return 0
	}
	return time.Since(m.renewed)
}

// Fence returns the fence of service if this master owns it.
func (m *Member) Fence(service string) (store.Fence, bool) {
	for _, f := range m.Owned() {
		if f.Service == service {
			return f, true
		}
	}
	return store.Fence{}, false
}

// Refresh asks the member to read the services it owns now rather than at
// its next heartbeat, as after a supervisor round in this process moved
// some. It does not wait.
func (m *Member) Refresh() {
	// A pending request already covers this one.
	select {
	case m.refresh <- struct{}{}:
	default:
	}
}

// OwnedChanged returns a channel closed at the next change of the owned
// services; read Owned after it closes.
func (m *Member) OwnedChanged() <-chan struct{} { return m.owned.C() }

// Start joins the cluster as a new incarnation and keeps the heartbeat
// going until Stop or ctx ends. It fails, and the master must not start,
// when a live master has the same name ([store.ErrNameTaken]) or the
// database cannot be reached.
func (m *Member) Start(ctx context.Context) error {
	m.mu.Lock()
	switch {
	case m.stopped:
		m.mu.Unlock()
		return ErrStopped
	case m.started:
		m.mu.Unlock()
		return ErrStarted
	}
	m.started = true
	m.mu.Unlock()

	jctx, cancel := context.WithTimeout(ctx, m.cfg.TTL)
	defer cancel()
	inc, err := m.join(jctx)
	m.mu.Lock()
	if err != nil {
		m.started = false
		m.mu.Unlock()
		return err
	}
	if m.stopped {
		// Stop came during the join: leave at once.
		m.mu.Unlock()
		m.leave(inc)
		return ErrStopped
	}
	defer m.mu.Unlock()
	m.inc, m.renewed = inc, inc.renewed
	ctx, m.cancel = context.WithCancel(ctx)
	m.done = make(chan struct{})
	go m.loop(ctx, m.done)
	return nil
}

// Stop leaves the cluster: the incarnation is marked stopped and its
// services and leases are released at once. Stop the master's services
// first. It may be called more than once, and before Start.
func (m *Member) Stop() {
	m.mu.Lock()
	m.stopped = true
	cancel, done := m.cancel, m.done
	m.cancel = nil
	m.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done

	m.mu.Lock()
	inc := m.inc
	m.inc = nil
	m.mu.Unlock()
	m.setOwned(nil)
	if inc != nil {
		m.leave(inc)
	}
}

// leave ends incarnation inc as stopped, releasing its services and
// leases at once, and closes its session.
func (m *Member) leave(inc *incarnation) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.cfg.Store.EndMaster(ctx, inc.id, store.MasterStopped, "shut down"); err != nil {
		m.log.Warn("could not record the stop; the master will be declared dead instead",
			"incarnation", inc.id, "err", err)
	}
	inc.session.close()
	m.log.Info("left the cluster", "incarnation", inc.id)
}

// Drain asks the supervisor to move this master's services to other
// masters, and waits until it owns none or ctx ends. A service that no
// other master may own is released. Call Stop afterwards.
func (m *Member) Drain(ctx context.Context) error {
	m.mu.Lock()
	m.draining = true
	inc := m.inc
	m.mu.Unlock()
	if inc != nil {
		if err := m.cfg.Store.DrainMaster(ctx, inc.id); err != nil {
			return err
		}
		m.log.Info("draining: waiting for the supervisor to move this master's services",
			"incarnation", inc.id, "services", len(m.Owned()))
	}
	for {
		changed := m.OwnedChanged()
		if len(m.Owned()) == 0 {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("drain: %d services still owned: %w", len(m.Owned()), ctx.Err())
		}
	}
}

// join records a new incarnation, with its session on PostgreSQL.
func (m *Member) join(ctx context.Context) (*incarnation, error) {
	st := m.cfg.Store
	sent := time.Now()
	id, err := st.NewMasterID(ctx)
	if err != nil {
		return nil, err
	}
	var sess *session
	if st.Dialect() == "postgres" {
		if sess, err = openSession(ctx, st, id, m.cfg.Wakes); err != nil {
			return nil, err
		}
	}
	m.mu.Lock()
	replaces, draining := m.replaces, m.draining
	m.mu.Unlock()
	master, err := st.JoinMaster(ctx, store.MasterInfo{ID: id, Name: m.cfg.Name, Host: m.cfg.Host,
		Roles: m.cfg.Roles, Tags: m.cfg.Tags, Version: m.cfg.Version,
		ConfigSource: m.cfg.ConfigSource, Replaces: replaces}, m.cfg.TTL)
	if err != nil {
		sess.close()
		return nil, err
	}
	if draining {
		if err := st.DrainMaster(ctx, master.ID); err != nil {
			m.log.Warn("could not mark the new incarnation draining", "err", err)
		}
	}
	if sess != nil {
		sess.start()
	}
	// Whatever was notified while this master was away went unheard.
	for _, w := range m.cfg.Wakes {
		w.Notify()
	}
	m.log.Info("joined the cluster", "incarnation", master.ID, "roles", m.cfg.Roles,
		"tags", m.cfg.Tags, "ttl", m.cfg.TTL, "replaces", replaces)
	return &incarnation{id: master.ID, renewed: sent, session: sess}, nil
}

// loop keeps the member alive until ctx ends: it heartbeats, fences the
// master when it cannot, and rejoins.
func (m *Member) loop(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	for {
		m.mu.Lock()
		inc := m.inc
		m.mu.Unlock()
		reason := m.serve(ctx, inc)
		if ctx.Err() != nil {
			return
		}
		m.fence(inc, reason)
		if !m.rejoin(ctx) {
			return
		}
	}
}

// serve heartbeats for incarnation inc until ctx ends, returning "", or
// until the incarnation must be given up, returning why.
func (m *Member) serve(ctx context.Context, inc *incarnation) string {
	ttl, interval := m.cfg.TTL, m.cfg.HeartbeatInterval
	fenceAt := inc.renewed.Add(ttl - m.cfg.FenceMargin)
	fence := time.NewTimer(time.Until(fenceAt))
	defer fence.Stop()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var lost <-chan error
	var moved <-chan struct{}
	if inc.session != nil {
		lost, moved = inc.session.lost, inc.session.services
	}
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return ""
		case <-fence.C:
			return fmt.Sprintf("heartbeat not renewed for %s (time-to-live %s)",
				time.Since(inc.renewed).Round(time.Millisecond), ttl)
		case err := <-lost:
			return fmt.Sprintf("database session lost: %v", err)
		case <-moved:
			m.readOwned(ctx, inc, fenceAt)
		case <-m.refresh:
			m.readOwned(ctx, inc, fenceAt)
		case <-tick.C:
			// The deadline keeps a hung database from holding the loop
			// past the moment to fence.
			sent := time.Now()
			deadline := sent.Add(interval)
			if fenceAt.Before(deadline) {
				deadline = fenceAt
			}
			hctx, cancel := context.WithDeadline(ctx, deadline)
			owned, err := m.cfg.Store.Heartbeat(hctx, inc.id)
			cancel()
			switch {
			case errors.Is(err, store.ErrMasterGone):
				return err.Error()
			case err != nil && ctx.Err() == nil:
				failures++
				if failures == 1 {
					m.log.Warn("heartbeat failed", "incarnation", inc.id, "err", err)
				}
				continue
			case err != nil:
				return ""
			}
			if failures > 0 {
				m.log.Info("heartbeat renewed", "incarnation", inc.id, "failures", failures)
				failures = 0
			}
			inc.renewed, fenceAt = sent, sent.Add(ttl-m.cfg.FenceMargin)
			m.mu.Lock()
			m.renewed = sent
			m.mu.Unlock()
			fence.Reset(time.Until(fenceAt))
			m.setOwned(owned)
		}
	}
}

// readOwned reads the services incarnation inc owns, giving up at fenceAt.
func (m *Member) readOwned(ctx context.Context, inc *incarnation, fenceAt time.Time) {
	ctx, cancel := context.WithDeadline(ctx, fenceAt)
	defer cancel()
	if owned, err := m.cfg.Store.OwnedServices(ctx, inc.id); err == nil {
		m.setOwned(owned)
	}
}

// fence gives up incarnation inc: the master's services stop before
// anyone may take them over, then the incarnation ends.
func (m *Member) fence(inc *incarnation, reason string) {
	m.log.Warn("fencing: stopping every clustered service of this master", "incarnation", inc.id,
		"reason", reason)
	m.setOwned(nil)
	if m.cfg.OnFence != nil {
		m.cfg.OnFence(reason)
	}
	// Ending the incarnation frees its services at once when the
	// database answers; otherwise they expire with it.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	err := m.cfg.Store.EndMaster(ctx, inc.id, store.MasterDead, "fenced itself: "+reason)
	cancel()
	if err != nil {
		m.log.Debug("could not record the fencing", "incarnation", inc.id, "err", err)
	}
	inc.session.close()
	m.mu.Lock()
	m.inc, m.replaces = nil, inc.id
	m.mu.Unlock()
}

// rejoin joins as a new incarnation, retrying with a jittered backoff. It
// returns false if ctx ended first.
func (m *Member) rejoin(ctx context.Context) bool {
	delay := 100 * time.Millisecond
	for {
		jctx, cancel := context.WithTimeout(ctx, m.cfg.TTL)
		inc, err := m.join(jctx)
		cancel()
		if err == nil {
			m.mu.Lock()
			m.inc, m.replaces, m.renewed = inc, 0, inc.renewed
			m.mu.Unlock()
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		m.log.Warn("could not rejoin the cluster; retrying", "err", err, "retry_in", delay)
		t := time.NewTimer(delay/2 + rand.N(delay))
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
		delay = min(2*delay, 5*time.Second)
	}
}

// setOwned records the services owned and wakes those waiting for a
// change.
func (m *Member) setOwned(owned []store.Fence) {
	m.mu.Lock()
	same := slices.Equal(m.services, owned)
	if !same {
		m.services = slices.Clone(owned)
	}
	m.mu.Unlock()
	if !same {
		m.log.Info("services owned", "services", owned)
		m.owned.Notify()
	}
}
