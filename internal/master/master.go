// Package master wires one master process: the HTTP server (REST API, web
// UI, worker API), dispatch, schedulers, pollers, the configuration watcher
// and housekeeping, all acting on the active generation in the database.
package master

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

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
	// WatchInterval is how often the configuration source is read;
	// default 2s.
	WatchInterval time.Duration
	Version       string
	Logger        *slog.Logger
}

// Master is a running master.
type Master struct {
	cfg      Config
	log      *slog.Logger
	requests *cluster.Wake
	changes  *cluster.Wake
	sched    *schedule.Service
	pollers  *pollerManager
	watcher  *configWatcher
	server   *http.Server
	listener net.Listener

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
		cfg.DataDir = filepath.Join(os.TempDir(), "regent-master-"+cfg.Name)
	}
	if cfg.WorkerTTL <= 0 {
		cfg.WorkerTTL = 30 * time.Second
	}
	if cfg.WatchInterval <= 0 {
		cfg.WatchInterval = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	m := &Master{
		cfg:      cfg,
		log:      cfg.Logger.With("master", cfg.Name),
		requests: cluster.NewWake(),
		changes:  cluster.NewWake(),
	}
	var err error
	m.sched, err = schedule.New(schedule.Config{Store: cfg.Store, Changes: m.changes,
		Requests: m.requests, Logger: m.log})
	if err != nil {
		return nil, err
	}
	m.pollers = newPollerManager(cfg.Store, filepath.Join(cfg.DataDir, "repos"), m.changes, m.log)
	if cfg.ConfigSource != "" {
		m.watcher = newConfigWatcher(cfg.Store, cfg.ConfigSource, cfg.Secrets,
			filepath.Join(cfg.DataDir, "config-source"), cfg.Name, m.log)
	}
	return m, nil
}

// Start applies the configuration source once (so that a master started
// on an empty database has a generation before it serves), opens the
// listener and starts every service.
func (m *Master) Start(ctx context.Context) error {
	if m.watcher != nil {
		if err := m.watcher.check(ctx); err != nil {
			// With a generation already stored the master can serve it;
			// on an empty database there is nothing to serve.
			if _, gerr := m.cfg.Store.ActiveGeneration(ctx); gerr != nil {
				return err
			}
			m.log.Error("configuration source refused; serving the active generation", "err", err)
		}
	}
	h, err := m.handler()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", m.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", m.cfg.Listen, err)
	}
	m.listener = ln
	m.server = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}

	m.mu.Lock()
	ctx, m.cancel = context.WithCancel(ctx)
	m.mu.Unlock()
	m.sched.Start(ctx)
	m.every(ctx, time.Second, "reconcile pollers", m.pollers.reconcile)
	m.every(ctx, 5*time.Second, "expire worker sessions", m.expireSessions)
	if m.watcher != nil {
		m.every(ctx, m.cfg.WatchInterval, "watch configuration", m.watcher.check)
	}
	m.loops.Add(1)
	go func() {
		defer m.loops.Done()
		if err := m.server.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.log.Error("http server stopped", "err", err)
		}
	}()
	m.log.Info("master started", "listen", ln.Addr().String(), "database", m.cfg.Store.Dialect())
	return nil
}

// Addr returns the address the master listens on.
func (m *Master) Addr() string { return m.listener.Addr().String() }

// Stop shuts the master down: the HTTP server gets a few seconds to
// finish requests, then every service stops. It may be called many times.
func (m *Master) Stop() {
	m.mu.Lock()
	cancel := m.cancel
	m.cancel = nil
	m.mu.Unlock()
	if cancel == nil {
		return
	}
	ctx, done := context.WithTimeout(context.Background(), 5*time.Second)
	defer done()
	m.server.Shutdown(ctx)
	cancel()
	// The loops first: a reconcile still running could otherwise start a
	// poller after stopAll.
	m.loops.Wait()
	m.sched.Stop()
	m.pollers.stopAll()
	m.log.Info("master stopped")
}

func (m *Master) handler() (http.Handler, error) {
	wa, err := workerapi.NewServer(workerapi.ServerConfig{Store: m.cfg.Store, Master: m.cfg.Name,
		Wake: m.requests, PollTimeout: m.cfg.PollTimeout, Logger: m.log})
	if err != nil {
		return nil, err
	}
	ws, err := web.New(web.Config{Store: m.cfg.Store, Master: m.cfg.Name,
		AdminToken: m.cfg.AdminToken, Wake: m.requests.Notify, Logger: m.log,
		Version: m.cfg.Version, ExtraStatus: m.notices})
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/api/worker/v1/", wa.Handler())
	mux.Handle("/", ws.Handler())
	return mux, nil
}

// notices are shown at the top of every UI page.
func (m *Master) notices(context.Context) []string {
	var out []string
	if m.cfg.AdminToken == "" {
		out = append(out, "Actions are open: this master has no admin token.")
	}
	if m.watcher != nil {
		if e := m.watcher.LastError(); e != "" {
			out = append(out, e)
		}
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

func (m *Master) expireSessions(ctx context.Context) error {
	ended, err := m.cfg.Store.ExpireSessions(ctx, m.cfg.WorkerTTL)
	for _, id := range ended {
		m.log.Warn("worker session lost", "session", id, "ttl", m.cfg.WorkerTTL)
	}
	if len(ended) > 0 {
		m.requests.Notify()
	}
	return err
}
