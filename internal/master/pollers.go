package master

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"time"

	"github.com/regent-ci/regent/internal/changes"
	"github.com/regent-ci/regent/internal/cluster"
	"github.com/regent-ci/regent/internal/config"
	"github.com/regent-ci/regent/internal/schedule"
	"github.com/regent-ci/regent/internal/store"
)

// define returns what runs for the owned service f under the desired
// state st (nil before the first generation), or false when this master
// has nothing to run for it.
func (m *Master) define(f store.Fence, st *config.State) (serviceDef, bool) {
	kind, subject := cluster.ParseService(f.Service)
	switch kind {
	case cluster.KindPoller:
		if st == nil {
			return serviceDef{}, false
		}
		r, ok := st.Repo(subject)
		if !ok || r.PollInterval <= 0 {
			return serviceDef{}, false
		}
		return m.pollerDef(f, r), true
	case cluster.KindConfigWatcher:
		if m.watcher == nil {
			return serviceDef{}, false
		}
		return loopDef(m.cfg.WatchInterval, func(ctx context.Context) { m.watch(ctx, f) }), true
	case cluster.KindHousekeeping:
		return loopDef(m.cfg.HousekeepingInterval, func(ctx context.Context) { m.housekeep(ctx, f) }), true
	case cluster.KindScheduler:
		if st == nil {
			return serviceDef{}, false
		}
		i := slices.IndexFunc(st.Schedulers, func(sc config.Scheduler) bool { return sc.Name == subject })
		if i < 0 || !cluster.TimedScheduler(st.Schedulers[i]) {
			return serviceDef{}, false
		}
		return m.timedDef(f, st, st.Schedulers[i]), true
	}
	m.warnOnce(f.Service, "owning a service of a kind this master does not know", "service", f.Service)
	return serviceDef{}, false
}

// timedDef is the timed scheduler sc (cron, periodic, or with a
// tree-stable timer), writing under fence f.
func (m *Master) timedDef(f store.Fence, st *config.State, sc config.Scheduler) serviceDef {
	repo, _ := st.Repo(sc.Repo)
	repo.Pos, sc.Pos = config.Pos{}, config.Pos{}
	spec, _ := json.Marshal([]any{sc, repo})
	return serviceDef{spec: string(spec), start: func(ctx context.Context) (func(), error) {
		t, err := schedule.NewTimed(schedule.TimedConfig{Store: m.cfg.Store, Scheduler: sc,
			Repo: repo, Fence: f, Changes: m.changes, Requests: m.requests, Logger: m.log})
		if err != nil {
			return nil, err
		}
		t.Start(ctx)
		return t.Stop, nil
	}}
}

// loopDef is a service that runs fn about every interval.
func loopDef(interval time.Duration, fn func(context.Context)) serviceDef {
	return serviceDef{start: func(ctx context.Context) (func(), error) {
		return startLoop(ctx, interval, fn), nil
	}}
}

// pollerDef is the git poller of repository r, recording under fence f.
func (m *Master) pollerDef(f store.Fence, r config.Repo) serviceDef {
	return serviceDef{spec: specOf(r), start: func(ctx context.Context) (func(), error) {
		p, err := changes.NewPoller(changes.PollerConfig{
			Repo:      r,
			Store:     fencedChanges{store: m.cfg.Store, fence: f},
			Dir:       filepath.Join(m.cfg.DataDir, "repos", r.Name),
			Logger:    m.log,
			OnChanges: func([]store.Change) { m.changes.Notify() },
			OnPoll:    func(err error) { m.reportRun(f, err) },
			Secrets:   m.cfg.Secrets,
			Health:    m.cfg.Store,
			Master:    m.cfg.Name,
		})
		if err != nil {
			return nil, err
		}
		if err := p.Start(ctx); err != nil {
			return nil, err
		}
		return p.Stop, nil
	}}
}

// fencedChanges is the store as a poller sees it: every poll it records
// is conditional on the fence of the poller's service.
type fencedChanges struct {
	store *store.Store
	fence store.Fence
}

func (c fencedChanges) RepoHeads(ctx context.Context, repo string) (map[string]string, error) {
	return c.store.RepoHeads(ctx, repo)
}

func (c fencedChanges) RecordPoll(ctx context.Context, repo string, heads map[string]string, cs []store.Change) ([]store.Change, error) {
	return c.store.RecordFencedPoll(ctx, c.fence, repo, heads, cs)
}

// watch runs the configuration watcher once.
func (m *Master) watch(ctx context.Context, f store.Fence) {
	err := m.watcher.check(ctx, f)
	var repeated repeatedError
	if err != nil && ctx.Err() == nil && !errors.Is(err, store.ErrFenced) && !errors.As(err, &repeated) {
		m.log.Error("configuration watcher", "err", err)
	}
	m.reportRun(f, err)
}

// webhookRetention is how long webhook deliveries are remembered to
// recognise a late duplicate.
const webhookRetention = 30 * 24 * time.Hour

// housekeep prunes incarnations that ended long ago and webhook
// deliveries too old to be redelivered.
func (m *Master) housekeep(ctx context.Context, f store.Fence) {
	n, err := m.cfg.Store.PruneMasters(ctx, f, m.cfg.IncarnationRetention)
	if n > 0 {
		m.log.Info("pruned ended master incarnations", "count", n)
	}
	if err == nil {
		var d int64
		d, err = m.cfg.Store.PruneWebhookDeliveries(ctx, f, webhookRetention)
		if d > 0 {
			m.log.Info("pruned old webhook deliveries", "count", d)
		}
	}
	m.reportRun(f, err)
}

// reportRun records the outcome of one run of the service holding f, which
// a fenced write may already have recorded. A fenced service is logged;
// it stops when this master learns who owns it now, within a heartbeat.
func (m *Master) reportRun(f store.Fence, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	switch {
	case errors.Is(err, context.Canceled):
		return
	case err == nil:
		err = m.cfg.Store.ServiceSucceeded(ctx, f)
	case !errors.Is(err, store.ErrFenced):
		err = m.cfg.Store.ServiceFailed(ctx, f, err.Error())
	}
	if errors.Is(err, store.ErrFenced) {
		m.log.Info("service fenced: another master owns it now", "service", f.Service, "token", f.Token)
	}
}

func specOf(r config.Repo) string {
	r.Pos = config.Pos{}
	b, _ := json.Marshal(r)
	return string(b)
}
