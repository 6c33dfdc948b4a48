// Package master wires one master process: the HTTP server (REST API, web
// UI, worker API), dispatch, schedulers, pollers, the configuration watcher
// and housekeeping, all acting on the active generation in the database.
package master

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/regent-ci/regent/internal/cluster"
	"github.com/regent-ci/regent/internal/config"
	"github.com/regent-ci/regent/internal/schedule"
	"github.com/regent-ci/regent/internal/store"
	"github.com/regent-ci/regent/internal/web"
	"github.com/regent-ci/regent/internal/workerapi"
)

// Config configures a master.
type Config struct {
	Store *store.Store
	// Name identifies the master in sessions, builds and logs.
	Name string
	// Listen is the HTTP address, e.g. "127.0.0.1:8010".
	Listen string
	// ConfigSource, when set, is a configuration directory or
	// git+URL#REF:PATH that this master watches and applies.
	ConfigSource string
	// Secrets resolves secret("name") in the configuration.
	Secrets config.SecretProvider
	// AdminToken, when set, is required for actions in the REST API.
	AdminToken string
	// DataDir holds the master's caches (git mirrors of polled repos).
	DataDir string
	// WorkerTTL is how long a silent worker stays alive; default 30s.
	WorkerTTL time.Duration
	// PollTimeout is how long a worker's poll is held; default 25s.
	PollTimeout time.Duration
	// MaxStepLog is the most output bytes stored per step;
	// workerapi.DefaultMaxStepLog when zero.
	MaxStepLog int64
	// WatchInterval is how often the configuration source is read;
	// default 2s.
	WatchInterval time.Duration
	// Roles are the master's roles (cluster.RoleWeb, RoleDispatch,
	// RoleServices); all of them when empty. Only masters with the
	// services role own clustered services and run schedulers.
	Roles []string
	// Tags let the configuration pin clustered services to this master.
	Tags []string
	// TTL is the cluster's time-to-live; cluster.DefaultTTL when zero.
	TTL time.Duration
	// SupervisorInterval is the time between supervisor rounds;
	// cluster.DefaultSupervisorInterval when zero.
	SupervisorInterval time.Duration
	// DrainTimeout bounds how long Stop waits for the supervisor to move
	// this master's services to others; default 10s.
	DrainTimeout time.Duration
	// HousekeepingInterval is how often housekeeping runs; default 1m.
	HousekeepingInterval time.Duration
	// IncarnationRetention is how long ended incarnations are kept;
	// default 7 days.
	IncarnationRetention time.Duration
	Version              string
	Logger               *slog.Logger
}

// Master is a running master.
type Master struct {
	cfg        Config
	log        *slog.Logger
	requests   *cluster.Wake
	changes    *cluster.Wake
	generation *cluster.Wake
	member     *cluster.Member
	supervisor *cluster.Supervisor
	services   *serviceManager
	sched      *schedule.Service
	watcher    *configWatcher
	server     *http.Server
	listener   net.Listener
	web        *web.Server
	warned     sync.Map // keys of warnings logged once

	// heardSince is when this master last began to hear its workers:
	// reached its database again, or ran again after a pause; lastExpiry
	// is when the loop last ran. Only the session-expiry loop uses them.
	heardSince time.Time
	lastExpiry time.Time

	mu     sync.Mutex
	cancel context.CancelFunc
	loops  sync.WaitGroup
}

// New validates cfg and fills its defaults.
func New(cfg Config) (*Master, error) {
	if cfg.Store == nil {
		return nil, errors.New("master: Store is required")
	}
	if cfg.Name == "" {
		host, _ := os.Hostname()
		cfg.Name = host
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:8010"
	}
	if cfg.DataDir == "" {
		// The user's own cache, not a predictable path in a directory
		// every user may write to.
		cache, err := os.UserCacheDir()
		if err != nil {
			return nil, fmt.Errorf("master: no DataDir given and no user cache directory: %w", err)
		}
		cfg.DataDir = filepath.Join(cache, "regent", "master-"+url.PathEscape(cfg.Name))
	}
	if cfg.WorkerTTL <= 0 {
		cfg.WorkerTTL = 30 * time.Second
	}
	if cfg.WatchInterval <= 0 {
		cfg.WatchInterval = 2 * time.Second
	}
	if len(cfg.Roles) == 0 {
		cfg.Roles = cluster.DefaultRoles
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 10 * time.Second
	}
	if cfg.HousekeepingInterval <= 0 {
		cfg.HousekeepingInterval = time.Minute
	}
	if cfg.IncarnationRetention <= 0 {
		cfg.IncarnationRetention = 7 * 24 * time.Hour
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	m := &Master{
		cfg:        cfg,
		log:        cfg.Logger.With("master", cfg.Name),
		requests:   cluster.NewWake(),
		changes:    cluster.NewWake(),
		generation: cluster.NewWake(),
	}
	var err error
	m.sched, err = schedule.New(schedule.Config{Store: cfg.Store, Changes: m.changes,
		Requests: m.requests, Logger: m.log})
	if err != nil {
		return nil, err
	}
	if cfg.ConfigSource != "" {
		m.watcher = newConfigWatcher(cfg.Store, cfg.ConfigSource, cfg.Secrets,
			filepath.Join(cfg.DataDir, "config-source"), cfg.Name, m.log)
		m.watcher.onApply = m.generationApplied
	}
	if err := m.newCluster(); err != nil {
		return nil, err
	}
	return m, nil
}

// newCluster makes the master's membership of the cluster, its supervisor
// candidacy and the manager of the services it owns.
func (m *Master) newCluster() error {
	cfg := m.cfg
	var err error
	m.member, err = cluster.NewMember(cluster.MemberConfig{
		Store: cfg.Store, Name: cfg.Name, Roles: cfg.Roles, Tags: cfg.Tags,
		Version: cfg.Version, ConfigSource: cfg.ConfigSource, TTL: cfg.TTL,
		Wakes: map[string]*cluster.Wake{
			store.TopicGeneration: m.generation,
			store.TopicRequest:    m.requests,
			store.TopicCancel:     m.requests,
			store.TopicChange:     m.changes,
		},
		// Called when the master cannot prove it is alive: its services
		// stop before anyone else may be given them.
		OnFence: func(string) { m.services.stopAll() },
		Logger:  m.log,
	})
	if err != nil {
		return err
	}
	m.supervisor, err = cluster.NewSupervisor(cluster.SupervisorConfig{Member: m.member,
		Interval: cfg.SupervisorInterval, Logger: m.log})
	if err != nil {
		return err
	}
	m.services = newServiceManager(m.member, &stateCache{store: cfg.Store}, m.define, m.log)
	return nil
}

// Start joins the cluster (failing if a live master has the same name),
// applies the configuration source on an empty database (so that the
// first master has a generation before it serves), opens the listener and
// starts every service. The clustered services this master owns start as
// the supervisor assigns them. The master runs until Stop: ctx bounds the
// start alone, so that a master whose ctx ends with a signal can still
// drain in Stop.
func (m *Master) Start(ctx context.Context) error {
	if err := m.applyFirst(ctx); err != nil {
		return err
	}
	h, err := m.handler()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", m.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", m.cfg.Listen, err)
	}
	// The master runs until Stop, not until ctx ends, so that Stop can
	// still hand its services over when ctx ended with a signal.
	ctx = context.WithoutCancel(ctx)
	if err := m.member.Start(ctx); err != nil {
		ln.Close()
		return err
	}
	m.listener = ln
	m.server = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}

	m.mu.Lock()
	ctx, m.cancel = context.WithCancel(ctx)
	m.mu.Unlock()
	m.supervisor.Start(ctx)
	if m.hasRole(cluster.RoleServices) {
		m.sched.Start(ctx)
	}
	m.loops.Add(1)
	go func() {
		defer m.loops.Done()
		m.services.loop(ctx, m.generation)
	}()
	m.every(ctx, expiryInterval, "expire worker sessions", m.expireSessions)
	m.loops.Add(1)
	go func() {
		defer m.loops.Done()
		if err := m.server.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.log.Error("http server stopped", "err", err)
		}
	}()
	m.log.Info("master started", "listen", ln.Addr().String(), "database", m.cfg.Store.Dialect(),
		"incarnation", m.member.Incarnation(), "roles", m.cfg.Roles, "tags", m.cfg.Tags)
	return nil
}

// applyFirst applies the configuration source at once on a database that
// has no generation yet, since there is nothing to serve until then. On a
// database with one, the watcher runs as a clustered service.
func (m *Master) applyFirst(ctx context.Context) error {
	if m.watcher == nil {
		return nil
	}
	_, err := m.cfg.Store.ActiveGeneration(ctx)
	if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	return m.watcher.check(ctx, store.Fence{})
}

// generationApplied wakes this master and the others after this master
// applied a generation.
func (m *Master) generationApplied() {
	m.generation.Notify()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.cfg.Store.Notify(ctx, store.TopicGeneration); err != nil {
		m.log.Warn("could not notify the other masters of the new generation", "err", err)
	}
}

// Incarnation returns the id of the master's current incarnation in the
// cluster, 0 while it has none.
func (m *Master) Incarnation() int64 { return m.member.Incarnation() }

func (m *Master) hasRole(r string) bool { return slices.Contains(m.cfg.Roles, r) }

// warnOnce logs a warning the first time key is seen.
func (m *Master) warnOnce(key, msg string, args ...any) {
	if _, seen := m.warned.LoadOrStore(key, true); !seen {
		m.log.Warn(msg, args...)
	}
}

// Addr returns the address the master listens on.
func (m *Master) Addr() string { return m.listener.Addr().String() }

// Stop shuts the master down gracefully: the supervisor first moves its
// clustered services to other masters (for up to DrainTimeout), then the
// HTTP server gets a few seconds to finish requests, every service stops
// and the master leaves the cluster. It may be called many times.
func (m *Master) Stop() {
	m.mu.Lock()
	cancel := m.cancel
	m.cancel = nil
	m.mu.Unlock()
	if cancel == nil {
		return
	}
	m.drain()
	ctx, done := context.WithTimeout(context.Background(), 5*time.Second)
	defer done()
	if m.web != nil {
		m.web.Close() // end live streams, which Shutdown would wait for
	}
	m.server.Shutdown(ctx)
	cancel()
	// The loops first: a reconcile still running could otherwise start a
	// service after stopAll.
	m.loops.Wait()
	m.sched.Stop()
	m.services.stopAll()
	m.supervisor.Stop()
	m.member.Stop()
	m.log.Info("master stopped")
}

// drain hands this master's clustered services over to other masters
// while it still serves.
func (m *Master) drain() {
	if len(m.member.Owned()) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.DrainTimeout)
	defer cancel()
	start := time.Now()
	if err := m.member.Drain(ctx); err != nil {
		m.log.Warn("drain incomplete; stopping anyway", "err", err)
		return
	}
	m.log.Info("drained: services handed over", "duration", time.Since(start).Round(time.Millisecond))
}

func (m *Master) handler() (http.Handler, error) {
	wa, err := workerapi.NewServer(workerapi.ServerConfig{Store: m.cfg.Store, Master: m.cfg.Name,
		Wake: m.requests, PollTimeout: m.cfg.PollTimeout, MaxStepLog: m.cfg.MaxStepLog,
		WorkerTTL: m.cfg.WorkerTTL,
		Logger:    m.log})
	if err != nil {
		return nil, err
	}
	ws, err := web.New(web.Config{Store: m.cfg.Store, Master: m.cfg.Name,
		AdminToken: m.cfg.AdminToken, Wake: m.requests.Notify, Logger: m.log,
		Version: m.cfg.Version, ExtraStatus: m.notices, Secrets: m.cfg.Secrets,
		Collectors: []prometheus.Collector{cluster.NewCollector(m.member, m.supervisor)}})
	if err != nil {
		return nil, err
	}
	m.web = ws
	mux := http.NewServeMux()
	if m.hasRole(cluster.RoleDispatch) {
		mux.Handle("/api/worker/v1/", wa.Handler())
	}
	if m.hasRole(cluster.RoleWeb) {
		clusterAPI{store: m.cfg.Store, log: m.log}.register(mux)
		mux.Handle("/", ws.Handler())
	}
	return mux, nil
}

// notices are shown at the top of every UI page.
func (m *Master) notices(ctx context.Context) []string {
	var out []string
	if m.cfg.AdminToken == "" {
		out = append(out, "Actions are open: this master has no admin token.")
	}
	if m.watcher != nil {
		if e := m.watcher.LastError(); e != "" {
			out = append(out, e)
		}
	}
	return append(out, m.clusterNotices(ctx)...)
}

// clusterNotices warns of live masters offering different configuration
// sources, and of clustered services that no live master owns.
func (m *Master) clusterNotices(ctx context.Context) []string {
	masters, err := m.cfg.Store.Masters(ctx, false)
	if err != nil {
		return nil // the page shows what it can; the store's error shows elsewhere
	}
	bySource := map[string][]string{}
	for _, ms := range masters {
		if ms.ConfigSource != "" {
			bySource[ms.ConfigSource] = append(bySource[ms.ConfigSource], ms.Name)
		}
	}
	var out []string
	if len(bySource) > 1 {
		var parts []string
		for _, src := range slices.Sorted(maps.Keys(bySource)) {
			parts = append(parts, fmt.Sprintf("%s (%s)", src, strings.Join(bySource[src], ", ")))
		}
		out = append(out, "Masters offer different configuration sources: "+strings.Join(parts, "; ")+
			". Only the owner of the configuration watcher applies its own.")
	}
	services, err := m.cfg.Store.Services(ctx, false)
	if err != nil {
		return out
	}
	var unowned []string
	for _, sv := range services {
		if sv.Owner == nil {
			unowned = append(unowned, sv.Name)
		}
	}
	if len(unowned) > 0 {
		out = append(out, "No live master owns "+strings.Join(unowned, ", ")+
			": check the tags they are pinned to and the masters with the services role.")
	}
	return out
}

// every runs fn now and then at each interval until ctx ends.
func (m *Master) every(ctx context.Context, interval time.Duration, what string, fn func(context.Context) error) {
	m.loops.Add(1)
	go func() {
		defer m.loops.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			if err := fn(ctx); err != nil && ctx.Err() == nil {
				m.log.Error("background task failed", "task", what, "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

// expiryInterval is how often a master looks for lost workers.
const expiryInterval = 5 * time.Second

// A worker's silence counts only while this master can hear it: after the
// master starts, regains its database after losing it, or runs again after
// it was itself stopped (SIGSTOP, a suspended laptop or virtual machine,
// starvation), every worker gets a full time-to-live to poll again before
// any is declared lost. Otherwise a database outage or a pause of the
// whole machine longer than the time-to-live would end every running
// build at once, though no worker was at fault.
func (m *Master) expireSessions(ctx context.Context) error {
	now := time.Now()
	if !m.lastExpiry.IsZero() {
		// The monotonic clock sees a stopped process's time pass; only the
		// wall clock sees a suspended machine's.
		gap := max(now.Sub(m.lastExpiry), now.Round(0).Sub(m.lastExpiry.Round(0)))
		if gap > expiryInterval+m.cfg.WorkerTTL/2 && !m.heardSince.IsZero() {
			m.log.Warn("this master did not run for a while; every worker gets a full time-to-live "+
				"before it counts as lost", "gap", gap.Round(time.Millisecond), "ttl", m.cfg.WorkerTTL)
			m.heardSince = time.Time{}
		}
	}
	m.lastExpiry = now
	if err := m.cfg.Store.DB().PingContext(ctx); err != nil {
		m.heardSince = time.Time{}
		return fmt.Errorf("reach the database: %w", err)
	}
	if m.heardSince.IsZero() {
		m.heardSince = time.Now()
	}
	if time.Since(m.heardSince) < m.cfg.WorkerTTL {
		return nil
	}
	ended, err := m.cfg.Store.ExpireSessions(ctx, m.cfg.WorkerTTL)
	if err != nil {
		m.heardSince = time.Time{}
	}
	for _, id := range ended {
		m.log.Warn("worker session lost", "session", id, "ttl", m.cfg.WorkerTTL)
	}
	if len(ended) > 0 {
		m.requests.Notify()
	}
	return err
}
