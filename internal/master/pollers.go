package master

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"path/filepath"
	"sync"

	"github.com/regent-ci/regent/internal/changes"
	"github.com/regent-ci/regent/internal/cluster"
	"github.com/regent-ci/regent/internal/config"
	"github.com/regent-ci/regent/internal/store"
)

// pollerManager keeps one running git poller per repository of the active
// generation: it starts pollers for new repositories, stops those of
// removed ones and restarts those whose definition changed.
type pollerManager struct {
	store   *store.Store
	dir     string
	changes *cluster.Wake
	log     *slog.Logger

	mu      sync.Mutex
	gen     int64
	running map[string]runningPoller
}

type runningPoller struct {
	spec   string
	poller *changes.Poller
}

func newPollerManager(st *store.Store, dir string, wake *cluster.Wake, log *slog.Logger) *pollerManager {
	return &pollerManager{store: st, dir: dir, changes: wake, log: log,
		running: map[string]runningPoller{}}
}

// reconcile brings the running pollers in line with the active
// generation. It does nothing while the generation is unchanged.
func (p *pollerManager) reconcile(ctx context.Context) error {
	n, err := p.store.ActiveGenerationNumber(ctx)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if n == p.gen {
		return nil
	}
	_, st, err := p.store.ActiveState(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	want := map[string]config.Repo{}
	for _, r := range st.Repos {
		want[r.Name] = r
	}
	for name, rp := range p.running {
		r, ok := want[name]
		if ok && specOf(r) == rp.spec {
			continue
		}
		rp.poller.Stop()
		delete(p.running, name)
		p.log.Info("poller stopped", "repo", name, "generation", n)
	}
	for name, r := range want {
		if _, ok := p.running[name]; ok {
			continue
		}
		poller, err := changes.NewPoller(changes.PollerConfig{
			Repo:      r,
			Store:     p.store,
			Dir:       filepath.Join(p.dir, name),
			Logger:    p.log,
			OnChanges: func([]store.Change) { p.changes.Notify() },
		})
		if err != nil {
			return err
		}
		poller.Start(ctx)
		p.running[name] = runningPoller{spec: specOf(r), poller: poller}
		p.log.Info("poller started", "repo", name, "url", r.URL, "generation", n)
	}
	p.gen = n
	return nil
}

func (p *pollerManager) stopAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for name, rp := range p.running {
		rp.poller.Stop()
		delete(p.running, name)
	}
	p.gen = 0
}

func specOf(r config.Repo) string {
	r.Pos = config.Pos{}
	b, _ := json.Marshal(r)
	return string(b)
}
