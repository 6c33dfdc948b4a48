package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/regent-ci/regent/internal/config"
	"github.com/regent-ci/regent/internal/workerapi"
)

// Defaults for the zero values of Config.
const (
	DefaultMaxBuilds  = 1
	DefaultBackoffMin = 100 * time.Millisecond
	DefaultBackoffMax = 5 * time.Second
	DefaultSpoolLimit = 1 << 30
	DefaultKillGrace  = 10 * time.Second
)

// stopReportGrace is how long, after the steps of a stopping worker were
// killed, their builds may still report to a master before giving up.
const stopReportGrace = 5 * time.Second

// spoolRoot is the directory under Basedir that holds the log spools.
const spoolRoot = ".spool"

// ErrStoppedByMaster is wrapped by Err when a master ended the worker's
// session (superseded by a newer process under the same name, revoked,
// removed from the configuration); the error text carries its reason.
var ErrStoppedByMaster = errors.New("stopped by the master")

// Config configures a Worker. Zero values are replaced by defaults.
type Config struct {
	// Masters are the base URLs of the masters to talk to, such as
	// "http://ci.example.com:8010". Any of them will do; the worker moves
	// to the next when one fails.
	Masters []string
	// Name and Password are the worker's credentials.
	Name, Password string
	// Basedir holds one directory per builder (Basedir/<builder>/build)
	// and the log spools (Basedir/.spool).
	Basedir string
	// MaxBuilds is how many builds run at once. Zero means the worker's
	// max_builds in the configuration, as the master reports it at each
	// login (1 until then).
	MaxBuilds int
	// Logger receives the worker's log (default slog.Default()).
	Logger *slog.Logger
	// HTTPClient makes the requests to masters (default: a new client).
	// It must not have a Timeout shorter than the masters' long poll.
	HTTPClient *http.Client
	// BackoffMin and BackoffMax bound the jittered delays between retries
	// while no master answers (defaults 100ms and 5s). A worker whose
	// credentials are refused retries between BackoffMax and six times it.
	BackoffMin, BackoffMax time.Duration
	// SpoolLimit is the most output kept per step, in bytes (default
	// 1 GiB); output past it is discarded after a marker line.
	SpoolLimit int64
	// KillGrace is how long a step's processes get between SIGTERM and
	// SIGKILL (default 10s).
	KillGrace time.Duration
	// Secrets resolves the secrets named in the builders' and steps'
	// secret_env when a step starts; their values are masked in the
	// step's log. Nil means a step that names one fails.
	Secrets config.SecretProvider
}

// withDefaults returns c with defaults filled in, or an error naming the
// first invalid field.
func (c Config) withDefaults() (Config, error) {
	if len(c.Masters) == 0 {
		return c, errors.New("worker config: Masters: at least one master URL is needed")
	}
	masters := make([]string, len(c.Masters))
	for i, m := range c.Masters {
		u, err := url.Parse(m)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return c, fmt.Errorf("worker config: Masters[%d]: %q is not an http(s) URL", i, m)
		}
		masters[i] = strings.TrimRight(m, "/")
	}
	c.Masters = masters
	if c.Name == "" {
		return c, errors.New("worker config: Name is empty")
	}
	if c.Basedir == "" {
		return c, errors.New("worker config: Basedir is empty")
	}
	abs, err := filepath.Abs(c.Basedir)
	if err != nil {
		return c, fmt.Errorf("worker config: Basedir: %w", err)
	}
	c.Basedir = abs
	if c.MaxBuilds < 0 || c.BackoffMin < 0 || c.BackoffMax < 0 || c.SpoolLimit < 0 || c.KillGrace < 0 {
		return c, errors.New("worker config: MaxBuilds, BackoffMin, BackoffMax, SpoolLimit " +
			"and KillGrace may not be negative")
	}
	c.MaxBuilds = or(c.MaxBuilds, DefaultMaxBuilds)
	c.BackoffMin = or(c.BackoffMin, DefaultBackoffMin)
	c.BackoffMax = or(c.BackoffMax, DefaultBackoffMax)
	c.SpoolLimit = or(c.SpoolLimit, DefaultSpoolLimit)
	c.KillGrace = or(c.KillGrace, DefaultKillGrace)
	if c.BackoffMin > c.BackoffMax {
		return c, fmt.Errorf("worker config: BackoffMin %s is above BackoffMax %s",
			c.BackoffMin, c.BackoffMax)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

func or[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Worker is the worker process's service: it keeps a session with the
// masters, long-polls them for builds, runs the builds and reports them.
// See the package documentation for how it behaves when masters fail.
type Worker struct {
	cfg       Config
	log       *slog.Logger
	client    *masterClient
	ownClient bool

	mu      sync.Mutex
	started bool
	stopped bool
	cancel  context.CancelCauseFunc // ends the poll loop and the steps
	// unlinkCtx releases the tie between Start's context and cancel.
	unlinkCtx func() bool
	err       error
	// maxBuilds is how many builds run at once: Config.MaxBuilds, or
	// the master's word for it when fixedMax is false.
	maxBuilds int
	fixedMax  bool
	builds    map[int64]*buildRun
	builders  map[string]chan struct{} // one build per builder directory
	poll      *inflightPoll
	wg        sync.WaitGroup // the builds
	ended     chan struct{}  // capacity 1: a build ended
	done      chan struct{}

	// stopReports ends the builds' reporting, which may outlive Stop's
	// cancellation by a grace period.
	reports     context.Context
	stopReports context.CancelCauseFunc
}

// New validates cfg and returns a worker that is not started yet.
func New(cfg Config) (*Worker, error) {
	fixedMax := cfg.MaxBuilds != 0
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	w := &Worker{
		cfg:       cfg,
		maxBuilds: cfg.MaxBuilds,
		fixedMax:  fixedMax,
		log:       cfg.Logger.With("component", "worker", "worker", cfg.Name),
		builds:    make(map[int64]*buildRun),
		builders:  make(map[string]chan struct{}),
		ended:     make(chan struct{}, 1),
		done:      make(chan struct{}),
	}
	if w.cfg.HTTPClient == nil {
		w.cfg.HTTPClient = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
		w.ownClient = true
	}
	w.client = newMasterClient(&w.cfg, w.log)
	w.client.onDrop = func(string) { w.interruptPoll(true) }
	return w, nil
}

// Start prepares the base directory and starts the poll loop. The worker
// runs until Stop is called, ctx ends, or a master stops it.
func (w *Worker) Start(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.started || w.stopped {
		return errors.New("worker: Start called twice or after Stop")
	}

	// Spools left by an earlier process belong to builds that its
	// session took down with it.
	spools := filepath.Join(w.cfg.Basedir, spoolRoot)
	if err := os.RemoveAll(spools); err != nil {
		return fmt.Errorf("worker: remove old log spools: %w", err)
	}
	if err := os.MkdirAll(spools, 0o700); err != nil {
		return fmt.Errorf("worker: create base directory: %w", err)
	}

	w.started = true
	// The end of ctx stops the worker as Stop does, with the same cause.
	root, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	w.cancel = cancel
	w.unlinkCtx = context.AfterFunc(ctx, func() { cancel(errWorkerStopping) })
	w.reports, w.stopReports = context.WithCancelCause(context.WithoutCancel(ctx))
	go w.loop(root)
	return nil
}

// Stop kills the running steps, gives their builds a few seconds to report
// the end to a master, and returns when everything the worker started has
// ended: after at most Config.KillGrace and seven seconds more. It may be
// called more than once, and before Start.
func (w *Worker) Stop() {
	w.mu.Lock()
	switch {
	case !w.started && !w.stopped:
		w.stopped = true
		close(w.done)
	case w.started:
		w.cancel(errWorkerStopping)
	}
	w.mu.Unlock()
	<-w.done
}

// Done is closed when the worker has stopped, after Stop or when a master
// ended its session.
func (w *Worker) Done() <-chan struct{} { return w.done }

// Err returns why a master stopped the worker (wrapping
// ErrStoppedByMaster), or nil.
func (w *Worker) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// stopByMaster ends the worker on a master's order. The master has ended
// the session's builds already, so they are killed and not reported.
func (w *Worker) stopByMaster(reason string) {
	err := fmt.Errorf("%w: %s", ErrStoppedByMaster, reason)
	w.mu.Lock()
	w.err = err
	w.mu.Unlock()
	w.log.Warn("a master ended this worker's session; stopping", "reason", reason)
	w.stopReports(err)
	w.cancel(err)
}

// shutdown waits for the builds after the poll loop ended, then marks
// the worker done.
func (w *Worker) shutdown(ctx context.Context) {
	allDone := make(chan struct{})
	go func() {
		w.wg.Wait()
		close(allDone)
	}()
	grace := time.NewTimer(w.cfg.KillGrace + stopReportGrace)
	select {
	case <-allDone:
	case <-grace.C:
		w.log.Warn("builds did not finish reporting in time; giving up on them")
		w.stopReports(context.Cause(ctx))
		<-allDone
	}
	grace.Stop()
	w.unlinkCtx()
	w.stopReports(nil)
	if w.ownClient {
		w.client.closeIdle()
	}
	w.log.Info("worker stopped")
	close(w.done)
}

// startBuild registers and starts a build handed out by a master.
func (w *Worker) startBuild(root context.Context, a workerapi.Assignment) {
	log := w.log.With("build_id", a.BuildID, "builder", a.Builder, "build_number", a.Number)
	b := &buildRun{
		w:        w,
		a:        a,
		log:      log,
		dir:      filepath.Join(w.cfg.Basedir, dirName(a.Builder), "build"),
		spoolDir: filepath.Join(w.cfg.Basedir, spoolRoot, fmt.Sprint(a.BuildID)),
		steps:    make(chan *stepReport, len(a.Steps)),
		props:    maps.Clone(a.Properties),
	}
	if b.props == nil {
		b.props = map[string]string{}
	}
	b.exec, b.stopExec = context.WithCancelCause(root)
	b.report, b.stopReport = context.WithCancelCause(w.reports)

	w.mu.Lock()
	w.builds[a.BuildID] = b
	slot, ok := w.builders[b.dir]
	if !ok {
		slot = make(chan struct{}, 1)
		w.builders[b.dir] = slot
	}
	w.mu.Unlock()

	log.Info("build started", "steps", len(a.Steps))
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer w.buildEnded(b)
		b.runIn(slot)
	}()
}

// buildEnded unregisters a build and lets a full or pausing worker poll
// for more at once.
func (w *Worker) buildEnded(b *buildRun) {
	w.mu.Lock()
	delete(w.builds, b.a.BuildID)
	w.mu.Unlock()
	w.interruptPoll(false)
	select {
	case w.ended <- struct{}{}:
	default: // a wake-up is pending already
	}
}

// cancelBuild stops a running build on a master's order and reports
// whether the order was new.
func (w *Worker) cancelBuild(id int64) bool {
	w.mu.Lock()
	b, ok := w.builds[id]
	w.mu.Unlock()
	if !ok {
		w.log.Debug("cancel for a build that is not running here", "build_id", id)
		return false
	}
	if b.exec.Err() != nil {
		return false
	}
	b.log.Info("cancelling build on the master's order")
	b.stopExec(errCancelled)
	return true
}

// running returns the ids of the builds on this worker and how many more
// it takes.
func (w *Worker) running() ([]int64, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	ids := make([]int64, 0, len(w.builds))
	for id := range w.builds {
		ids = append(ids, id)
	}
	return ids, max(w.maxBuilds-len(w.builds), 0)
}

// adoptMaxBuilds takes the max_builds a master reported at login, unless
// the worker's own configuration fixes it.
func (w *Worker) adoptMaxBuilds(n int) {
	if n <= 0 || w.fixedMax {
		return
	}
	w.mu.Lock()
	changed := w.maxBuilds != n
	w.maxBuilds = n
	w.mu.Unlock()
	if changed {
		w.log.Info("running as many builds at once as the master says", "max_builds", n)
	}
}
