// Package schedule turns changes and force requests into buildsets.
//
// Schedulers are driven by the changes table, not by callbacks: each keeps
// a durable cursor (the last change it considered), so a change recorded
// just before a master dies is still scheduled by whichever master runs
// the scheduler next, and a buildset per change and scheduler is unique in
// the database, so however many masters see a change it is built once.
package schedule

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/regent-ci/regent/internal/cluster"
	"github.com/regent-ci/regent/internal/config"
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
	Logger   *slog.Logger
}

// Service runs the change-driven schedulers of the active generation.
type Service struct {
	cfg    Config
	log    *slog.Logger
	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
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
	return &Service{cfg: cfg, log: cfg.Logger.With("component", "schedule")}, nil
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
	for {
		wake := s.cfg.Changes.C()
		if err := s.RunOnce(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("scheduling changes failed", "err", err)
		}
		jitter := time.Duration(rand.Int64N(int64(s.cfg.Interval) / 10))
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-time.After(s.cfg.Interval + jitter):
		}
	}
}

// RunOnce gives every change-driven scheduler of the active generation
// the changes it has not yet considered.
func (s *Service) RunOnce(ctx context.Context) error {
	_, st, err := s.cfg.Store.ActiveState(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, sc := range st.Schedulers {
		if sc.Kind != config.SchedulerBranch {
			continue
		}
		repo, _ := st.Repo(sc.Repo)
		if err := s.runBranch(ctx, sc, repo); err != nil {
			return fmt.Errorf("scheduler %q: %w", sc.Name, err)
		}
	}
	return nil
}

func (s *Service) runBranch(ctx context.Context, sc config.Scheduler, repo config.Repo) error {
	cursor, err := s.cfg.Store.SchedulerCursor(ctx, sc.Name)
	if err != nil {
		return err
	}
	for {
		changes, err := s.cfg.Store.ChangesAfter(ctx, cursor, 100)
		if err != nil || len(changes) == 0 {
			return err
		}
		for _, c := range changes {
			if matches(sc, c) {
				if err := s.buildChange(ctx, sc, repo, c); err != nil {
					return err
				}
			}
			cursor = c.ID
		}
		if err := s.cfg.Store.SetSchedulerCursor(ctx, sc.Name, cursor); err != nil {
			return err
		}
	}
}

// matches reports whether a branch scheduler wants a change.
func matches(sc config.Scheduler, c store.Change) bool {
	if c.Repository != sc.Repo {
		return false
	}
	return sc.Branch == "" || strings.TrimPrefix(c.Branch, "refs/heads/") == sc.Branch
}

// buildChange creates the scheduler's buildset for a change. The
// repository property is the URL the change came from, as steps need it.
func (s *Service) buildChange(ctx context.Context, sc config.Scheduler, repo config.Repo, c store.Change) error {
	id := c.ID
	bs, created, err := s.cfg.Store.CreateBuildset(ctx, store.BuildsetInput{
		Reason:    fmt.Sprintf("scheduler %s: new commit %.12s on %s", sc.Name, c.Revision, c.Branch),
		Scheduler: sc.Name,
		ChangeID:  &id,
		Properties: map[string]string{
			"revision":   c.Revision,
			"branch":     strings.TrimPrefix(c.Branch, "refs/heads/"),
			"repository": repo.URL,
		},
		Builders: sc.Builders,
	})
	if err != nil {
		return err
	}
	if created {
		s.log.Info("buildset created", "buildset", bs.ID, "scheduler", sc.Name,
			"change", c.ID, "revision", c.Revision)
		s.cfg.Requests.Notify()
	}
	return nil
}

// Force creates a buildset for one builder on a user's request.
func Force(ctx context.Context, st *store.Store, builder, reason string, props map[string]string) (store.Buildset, error) {
	if reason == "" {
		reason = "forced"
	}
	bs, _, err := st.CreateBuildset(ctx, store.BuildsetInput{
		Reason:     reason,
		Scheduler:  "force",
		Properties: props,
		Builders:   []string{builder},
	})
	return bs, err
}
