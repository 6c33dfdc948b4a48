package schedule

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/regent-ci/regent/internal/cluster"
	"github.com/regent-ci/regent/internal/config"
	"github.com/regent-ci/regent/internal/quietlog"
	"github.com/regent-ci/regent/internal/store"
)

// Config configures the scheduler service.
type Config struct {
	Store *store.Store
	// Changes is notified when changes are recorded; Requests is notified
	// when build requests are created.
	Changes  *cluster.Wake
	Requests *cluster.Wake
	// Interval is how often the service looks for new changes without a
	// wake-up; default 1s.
	Interval time.Duration
	// RunTimed makes the service run the timed schedulers too, unfenced,
	// for a process that does not run them as clustered services (a test,
	// an embedded single master). A master of a cluster leaves it false
	// and runs each with [NewTimed] while it owns its service.
	RunTimed bool
	Logger   *slog.Logger
}

// Service runs the schedulers of the active generation that every master
// may run at once: change-driven schedulers without a tree-stable timer
// and dependent schedulers. It also cancels what trigger steps started
// for builds that were cancelled.
type Service struct {
	cfg    Config
	log    *slog.Logger
	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}

	// timed holds the timed schedulers run when cfg.RunTimed is set, by
	// name.
	timedMu sync.Mutex
	timed   map[string]*Timed
}

// New validates cfg and fills its defaults.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil {
		return nil, errors.New("schedule: Store is required")
	}
	if cfg.Changes == nil {
		cfg.Changes = cluster.NewWake()
	}
	if cfg.Requests == nil {
		cfg.Requests = cluster.NewWake()
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Service{cfg: cfg, log: cfg.Logger.With("component", "schedule"),
		timed: map[string]*Timed{}}, nil
}

// Start runs the service until Stop or ctx ends.
func (s *Service) Start(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done != nil {
		return
	}
	ctx, s.cancel = context.WithCancel(ctx)
	s.done = make(chan struct{})
	go s.loop(ctx, s.done)
}

// Stop ends the service and waits for it; it may be called many times.
func (s *Service) Stop() {
	s.mu.Lock()
	cancel, done := s.cancel, s.done
	s.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
}

func (s *Service) loop(ctx context.Context, done chan struct{}) {
	defer close(done)
	var failures quietlog.Repeats
	for {
		wake := s.cfg.Changes.C()
		if err := s.RunOnce(ctx); err != nil && ctx.Err() == nil {
			failures.Error(s.log, "scheduling failed", err)
		} else {
			failures.Reset()
		}
		jitter := time.Duration(rand.Int64N(int64(s.cfg.Interval) / 10))
		t := time.NewTimer(s.cfg.Interval + jitter)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// RunOnce runs every scheduler the service is responsible for once: it
// gives change-driven schedulers the changes they have not considered,
// starts dependent schedulers whose upstream builds succeeded, and cancels
// the children of cancelled builds. A failing scheduler does not keep the
// others from running; the errors are joined.
func (s *Service) RunOnce(ctx context.Context) error {
	_, st, err := s.cfg.Store.ActiveState(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	if n, err := s.cfg.Store.CancelOrphanedChildren(ctx); err != nil {
		errs = append(errs, err)
	} else if n > 0 {
		s.log.Info("cancelled builds triggered by cancelled builds", "count", n)
		s.cfg.Requests.Notify()
	}
	for _, sc := range st.Schedulers {
		var err error
		switch {
		case cluster.TimedScheduler(sc):
			if s.cfg.RunTimed {
				err = s.runTimed(ctx, st, sc)
			}
		case sc.Kind == config.SchedulerBranch || sc.Kind == config.SchedulerAnyBranch:
			repo, _ := st.Repo(sc.Repo)
			err = s.runChanges(ctx, sc, repo)
		case sc.Kind == config.SchedulerDependent:
			err = s.runDependent(ctx, sc)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("scheduler %q: %w", sc.Name, err))
		}
	}
	return errors.Join(errs...)
}

// runTimed runs a timed scheduler in this service, unfenced.
func (s *Service) runTimed(ctx context.Context, st *config.State, sc config.Scheduler) error {
	repo, _ := st.Repo(sc.Repo)
	s.timedMu.Lock()
	defer s.timedMu.Unlock()
	t := s.timed[sc.Name]
	if t == nil || !sameTimed(t.cfg, sc, repo) {
		var err error
		t, err = NewTimed(TimedConfig{Store: s.cfg.Store, Scheduler: sc, Repo: repo,
			Requests: s.cfg.Requests, Logger: s.cfg.Logger})
		if err != nil {
			return err
		}
		s.timed[sc.Name] = t
	}
	_, err := t.RunOnce(ctx)
	return err
}
