package master

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/regent-ci/regent/internal/cluster"
	"github.com/regent-ci/regent/internal/config"
	"github.com/regent-ci/regent/internal/quietlog"
	"github.com/regent-ci/regent/internal/store"
)

// serviceManager runs the clustered services that this master owns, each
// under its fence: it starts those the supervisor gives the master, stops
// those it loses, and restarts those whose token or definition changed.
type serviceManager struct {
	member owner
	state  *stateCache
	define func(f store.Fence, st *config.State) (serviceDef, bool)
	log    *slog.Logger

	mu      sync.Mutex
	running map[string]runningService
	unknown map[string]bool // services owned that this master cannot run, logged once
}

// owner tells which services this master owns: a [cluster.Member].
type owner interface {
	Owned() []store.Fence
	OwnedChanged() <-chan struct{}
}

// serviceDef is what runs for one owned service.
type serviceDef struct {
	// spec is the service's definition; a change restarts the service.
	spec string
	// start starts the service and returns a function that stops it and
	// waits for it to end.
	start func(ctx context.Context) (stop func(), err error)
}

type runningService struct {
	fence store.Fence
	spec  string
	stop  func()
}

func newServiceManager(member owner, state *stateCache,
	define func(store.Fence, *config.State) (serviceDef, bool), log *slog.Logger) *serviceManager {
	return &serviceManager{member: member, state: state, define: define, log: log,
		running: map[string]runningService{}, unknown: map[string]bool{}}
}

// reconcile makes the running services those that the master owns under
// the active generation.
func (s *serviceManager) reconcile(ctx context.Context) error {
	st, _, err := s.state.get(ctx)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if ctx.Err() != nil {
		return nil // stopping: start nothing more
	}
	want := map[string]runningService{}
	defs := map[string]serviceDef{}
	for _, f := range s.member.Owned() {
		def, ok := s.define(f, st)
		if !ok {
			if !s.unknown[f.Service] {
				// Usually a service the active generation just removed,
				// which the supervisor retires within a heartbeat.
				s.log.Info("owning a service the active configuration does not define; "+
					"not running it", "service", f.Service)
				s.unknown[f.Service] = true
			}
			continue
		}
		want[f.Service] = runningService{fence: f, spec: def.spec}
		defs[f.Service] = def
	}
	for _, name := range slices.Sorted(maps.Keys(s.running)) {
		r := s.running[name]
		if w, ok := want[name]; ok && w.fence == r.fence && w.spec == r.spec {
			continue
		}
		r.stop()
		delete(s.running, name)
		s.log.Info("service stopped", "service", name, "token", r.fence.Token)
	}
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(want)) {
		if _, ok := s.running[name]; ok {
			continue
		}
		w := want[name]
		stop, err := defs[name].start(ctx)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		w.stop = stop
		s.running[name] = w
		s.log.Info("service started", "service", name, "token", w.fence.Token)
	}
	return errors.Join(errs...)
}

// stopAll stops every running service and waits for them.
func (s *serviceManager) stopAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, r := range s.running {
		r.stop()
		delete(s.running, name)
		s.log.Info("service stopped", "service", name, "token", r.fence.Token)
	}
}

// runningFences returns the fences of the services running, by name.
func (s *serviceManager) runningFences() []store.Fence {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []store.Fence
	for _, name := range slices.Sorted(maps.Keys(s.running)) {
		out = append(out, s.running[name].fence)
	}
	return out
}

// loop reconciles at once, whenever the owned services or the generation
// change, and every second in case a wake-up was missed.
func (s *serviceManager) loop(ctx context.Context, generation *cluster.Wake) {
	var failures quietlog.Repeats
	for {
		owned, gen := s.member.OwnedChanged(), generation.C()
		if err := s.reconcile(ctx); err != nil && ctx.Err() == nil {
			failures.Error(s.log, "could not bring the clustered services this master runs up to date", err)
		} else {
			failures.Reset()
		}
		t := time.NewTimer(time.Second)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-owned:
		case <-gen:
		case <-t.C:
		}
		t.Stop()
	}
}

// stateCache holds the active generation's desired state, read again only
// when the generation changes.
type stateCache struct {
	store *store.Store

	mu    sync.Mutex
	gen   int64
	state *config.State
}

// get returns the active state, nil before the first generation, and its
// generation number.
func (c *stateCache) get(ctx context.Context) (*config.State, int64, error) {
	n, err := c.store.ActiveGenerationNumber(ctx)
	if err != nil {
		return nil, 0, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if n == c.gen {
		return c.state, n, nil
	}
	g, st, err := c.store.ActiveState(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	c.gen, c.state = g.Number, st
	return st, g.Number, nil
}

// startLoop runs fn now and then about every interval until the returned
// function is called, which waits for fn to return.
func startLoop(ctx context.Context, interval time.Duration, fn func(context.Context)) func() {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			fn(ctx)
			t := time.NewTimer(interval - interval/10 + rand.N(interval/5+1))
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}
