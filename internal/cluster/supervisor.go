package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/regent-ci/regent/internal/config"
	"github.com/regent-ci/regent/internal/store"
)

// DefaultSupervisorInterval is how often a master tries for the supervisor
// lease and the holder runs a round.
const DefaultSupervisorInterval = 500 * time.Millisecond

// SupervisorConfig configures a [Supervisor].
type SupervisorConfig struct {
	// Member is the master's membership; the supervisor acts for its
	// current incarnation, and not at all while it has none.
	Member *Member
	// Interval is the time between rounds; DefaultSupervisorInterval when
	// zero. Crash failover takes up to about one interval.
	Interval time.Duration
	// Logger receives the supervisor's logs; slog.Default() when nil.
	Logger *slog.Logger
}

// Supervisor is a master's candidacy for the supervisor lease. Every
// master runs one; the one holding the lease declares dead masters dead
// and places the clustered services of the active generation (see
// [Place]), one transaction per round.
type Supervisor struct {
	cfg SupervisorConfig
	log *slog.Logger
	st  *store.Store

	mu     sync.Mutex
	lease  store.Lease // Holder 0 while not held
	gen    int64
	state  *config.State
	cancel context.CancelFunc
	done   chan struct{}
}

// NewSupervisor checks cfg and fills its defaults.
func NewSupervisor(cfg SupervisorConfig) (*Supervisor, error) {
	if cfg.Member == nil {
		return nil, errors.New("supervisor: no member")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultSupervisorInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Supervisor{cfg: cfg, st: cfg.Member.Store(),
		log: cfg.Logger.With("component", "supervisor", "master", cfg.Member.Name())}, nil
}

// Start runs rounds until Stop or ctx ends. It may be called once.
func (s *Supervisor) Start(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done != nil {
		return
	}
	ctx, s.cancel = context.WithCancel(ctx)
	s.done = make(chan struct{})
	go s.loop(ctx, s.done)
}

// Stop ends the rounds and gives up the lease if held, so that another
// master takes over at once. It may be called more than once.
func (s *Supervisor) Stop() {
	s.mu.Lock()
	cancel, done := s.cancel, s.done
	s.cancel = nil
	s.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
	if l, ok := s.Lease(); ok {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := s.st.ReleaseLease(ctx, l); err != nil {
			s.log.Warn("could not release the supervisor lease; it will expire", "err", err)
		}
		s.drop("stopped")
	}
}

// Lease returns the supervisor lease while this master holds it.
func (s *Supervisor) Lease() (store.Lease, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lease, s.lease.Holder != 0
}

func (s *Supervisor) loop(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	for {
		rctx, cancel := context.WithTimeout(ctx, max(4*s.cfg.Interval, 2*time.Second))
		err := s.round(rctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			s.log.Warn("supervisor round failed", "err", err)
		}
		// Jitter keeps the masters' attempts apart.
		d := s.cfg.Interval
		t := time.NewTimer(d - d/5 + rand.N(2*d/5+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// round takes or renews the lease and, while held, supervises once.
func (s *Supervisor) round(ctx context.Context) error {
	id := s.cfg.Member.Incarnation()
	if id == 0 {
		s.drop("this master is not joined")
		return nil
	}
	ttl := s.cfg.Member.TTL()
	lease, err := s.st.AcquireLease(ctx, store.SupervisorLease, id, ttl)
	if errors.Is(err, store.ErrLeaseHeld) || errors.Is(err, store.ErrMasterGone) {
		s.drop("held by another master")
		return nil
	}
	if err != nil {
		return err
	}
	s.take(lease)
	st, err := s.activeState(ctx)
	if err != nil {
		return err
	}
	res, err := s.st.Supervise(ctx, lease, ttl, func(v store.ClusterView) []store.Placement {
		return Place(v.Masters, v.Services, DesiredServices(st, v.Masters))
	})
	if errors.Is(err, store.ErrFenced) {
		s.drop("lost")
		return nil
	}
	if err != nil {
		return err
	}
	s.report(res)
	if len(res.Moves) > 0 {
		s.cfg.Member.Refresh() // this master may be among those given services
	}
	return nil
}

// activeState returns the active generation's desired state, nil before
// the first, read again only when the generation changes.
func (s *Supervisor) activeState(ctx context.Context) (*config.State, error) {
	n, err := s.st.ActiveGenerationNumber(ctx)
	if err != nil {
		return nil, fmt.Errorf("read active generation: %w", err)
	}
	s.mu.Lock()
	gen, st := s.gen, s.state
	s.mu.Unlock()
	if n == gen {
		return st, nil
	}
	g, st, err := s.st.ActiveState(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.gen, s.state = g.Number, st
	s.mu.Unlock()
	return st, nil
}

// take records that lease is held, logging a new term.
func (s *Supervisor) take(lease store.Lease) {
	s.mu.Lock()
	old := s.lease
	s.lease = lease
	s.mu.Unlock()
	if old.Token != lease.Token {
		s.log.Info("became supervisor", "incarnation", lease.Holder, "token", lease.Token)
	}
}

// drop records that the lease is not held, logging the end of a term.
func (s *Supervisor) drop(why string) {
	s.mu.Lock()
	old := s.lease
	s.lease = store.Lease{}
	s.mu.Unlock()
	if old.Holder != 0 {
		s.log.Info("no longer supervisor", "incarnation", old.Holder, "token", old.Token, "why", why)
	}
}

// report logs what a round changed.
func (s *Supervisor) report(res store.SuperviseResult) {
	for _, m := range res.Dead {
		s.log.Warn("master declared dead", "dead_master", m.Name, "incarnation", m.ID, "reason", m.Reason)
	}
	for _, mv := range res.Moves {
		s.log.Info("service moved", "service", mv.Service, "from", mv.FromName, "to", mv.ToName,
			"token", mv.Token)
	}
	for _, name := range res.Retired {
		s.log.Info("service retired", "service", name)
	}
}
