package chaos

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/regent-ci/regent/internal/testutil/pgtest"
	"github.com/regent-ci/regent/internal/testutil/procs"
)

// Config says what campaign to run.
type Config struct {
	Options
	// Settle bounds the wait, once every fault is healed, for the cluster
	// to finish its work; 2 minutes if zero.
	Settle time.Duration
	// Logf receives the campaign's progress; nothing if nil.
	Logf func(format string, args ...any)
	// Out, if set, is a directory that receives every process's output
	// and the PostgreSQL log once the campaign is over.
	Out string
}

// campaign is one run: its plan, its processes and what it records.
type campaign struct {
	t    *testing.T
	cfg  Config
	plan Plan
	rec  recorder

	regent  string
	pg      *pgtest.Server
	dbURL   string // straight to PostgreSQL, for the runner's own reads
	dir     string
	repo    string
	markDir string
	secrets string
	masters []*master
	workers []*node // the always-configured workers, then the spare
	client  *http.Client

	mu      sync.Mutex
	layout  int     // the layout last applied
	forced  []int64 // requests forced so far
	pushes  int
	applyMu sync.Mutex     // one apply at a time
	healing sync.WaitGroup // one per fault not yet healed
}

// Run runs a campaign for t: it starts PostgreSQL, three masters, the
// workers and a git repository, drives the plan's workload while
// injecting its faults, heals every fault, lets the cluster settle and
// returns the history. Only a failure to set up or to collect fails t;
// the caller checks the history.
func Run(t *testing.T, cfg Config) *History {
	t.Helper()
	if cfg.Settle <= 0 {
		cfg.Settle = 2 * time.Minute
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	c := &campaign{t: t, cfg: cfg, plan: NewPlan(cfg.Options), client: &http.Client{Timeout: 3 * time.Second}}
	c.cfg.Options.defaults()
	c.rec.h = History{Seed: cfg.Seed, Duration: cfg.Duration, LockLimits: lockLimits, Bounds: Bounds{
		Propagation: 3 * time.Second,
		Failover:    c.cfg.MasterTTL + 6*time.Second,
		Recovery:    c.cfg.MasterTTL + 10*time.Second,
	}}
	c.setUp()
	c.drive()
	c.heal()
	c.settle()
	c.collect()
	if cfg.Out != "" {
		if err := c.saveLogs(filepath.Join(cfg.Out, "logs")); err != nil {
			t.Errorf("save the campaign's logs: %v", err)
		}
	}
	return c.rec.history()
}

// setUp starts everything and applies the first configuration.
func (c *campaign) setUp() {
	t := c.t
	c.regent = procs.Regent(t)
	c.pg = pgtest.NewServer(t)
	c.dbURL = c.pg.NewDatabase(t)
	c.dir = t.TempDir()
	c.markDir = filepath.Join(c.dir, "marks")
	c.secrets = filepath.Join(c.dir, "secrets")
	c.repo = filepath.Join(c.dir, "repo")
	for _, d := range []string{c.markDir, c.secrets, c.repo} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, w := range append(append([]string(nil), c.plan.Workers...), c.plan.SpareWorker) {
		if err := os.WriteFile(filepath.Join(c.secrets, w), []byte("pw-"+w+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(c.secrets, hookSecret), []byte(c.hookSecret()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.git("init", "-q", "-b", "main")
	if _, err := c.commit("initial"); err != nil {
		t.Fatal(err)
	}
	if err := c.apply(0, false, -1); err != nil {
		t.Fatalf("apply the first configuration: %v", err)
	}

	extra := []string{"--ttl", c.cfg.MasterTTL.String(), "--worker-ttl", c.cfg.WorkerTTL.String()}
	for i := range 3 {
		m, err := newMaster(t, c.regent, fmt.Sprintf("m%d", i+1), c.dbURL, c.secrets, extra)
		if err != nil {
			t.Fatal(err)
		}
		c.masters = append(c.masters, m)
	}
	for _, m := range c.masters {
		if err := m.startMaster(t); err != nil {
			t.Fatal(err)
		}
	}
	for _, w := range append(append([]string(nil), c.plan.Workers...), c.plan.SpareWorker) {
		n := newWorker(t, c.regent, w, c.secrets, c.masters)
		n.start(t)
		c.workers = append(c.workers, n)
	}
	c.waitFirstPoll()
	c.rec.with(func(h *History) { h.Started = time.Now() })
	c.cfg.Logf("campaign seed %d: %d workers, %d actions and %d faults over %s",
		c.cfg.Seed, len(c.plan.Workers), len(c.plan.Actions), len(c.plan.Faults), c.cfg.Duration)
}

// waitFirstPoll waits until the poller has recorded the repository's
// heads: a poller's first poll records no change, so a push before it
// would rightly never become one.
func (c *campaign) waitFirstPoll() {
	deadline := time.Now().Add(60 * time.Second)
	for {
		var n int
		err := c.query(func(conn *pgx.Conn) error {
			return conn.QueryRow(context.Background(),
				`SELECT count(*) FROM repo_heads WHERE repository = 'app'`).Scan(&n)
		})
		if err == nil && n > 0 {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("the poller did not poll within a minute (last error %v)", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// query runs f on a short connection straight to PostgreSQL.
func (c *campaign) query(f func(*pgx.Conn) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return f(conn)
}

// drive runs the workload, the faults, the sampler and the monitor for
// the campaign's duration.
func (c *campaign) drive() {
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Duration)
	defer cancel()
	var wg sync.WaitGroup
	for _, loop := range []func(context.Context){c.runWorkload, c.runFaults, c.runSampler, c.runMonitor} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			loop(ctx)
		}()
	}
	wg.Wait()
}

// sleepUntil waits until the campaign's clock reads at, and reports false
// if ctx ended first.
func (c *campaign) sleepUntil(ctx context.Context, at time.Duration) bool {
	var start time.Time
	c.rec.with(func(h *History) { start = h.Started })
	d := time.Until(start.Add(at))
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

// git runs git in the campaign's repository.
func (c *campaign) git(args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = c.repo
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+c.dir,
		"GIT_AUTHOR_NAME=Chaos", "GIT_AUTHOR_EMAIL=chaos@example.com",
		"GIT_COMMITTER_NAME=Chaos", "GIT_COMMITTER_EMAIL=chaos@example.com")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("git %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// commit commits a new file to main and returns the revision.
func (c *campaign) commit(name string) (string, error) {
	if err := os.WriteFile(filepath.Join(c.repo, name+".txt"), []byte(name+"\n"), 0o644); err != nil {
		return "", err
	}
	if _, err := c.git("add", name+".txt"); err != nil {
		return "", err
	}
	if _, err := c.git("commit", "-q", "-m", name); err != nil {
		return "", err
	}
	return c.git("rev-parse", "HEAD")
}

// heal ends every fault still acting, restarts what is down, and waits
// until every master serves and every worker runs.
func (c *campaign) heal() {
	c.healAll()
	for _, m := range c.masters {
		if p := m.current(); p == nil || p.Exited() {
			if err := m.startMaster(c.t); err != nil {
				c.t.Fatal(err)
			}
		}
	}
	for _, w := range c.workers {
		if p := w.current(); p == nil || p.Exited() {
			w.start(c.t)
		}
	}
	c.rec.with(func(h *History) { h.Healed = time.Now() })
	c.rec.event("healed", "", "every fault healed")
}

// settle waits until no request is pending or claimed, no build runs,
// the last push is recorded and every master is live, or the settling
// time runs out.
func (c *campaign) settle() {
	deadline := time.Now().Add(c.cfg.Settle)
	var last string
	for {
		busy, err := c.busy()
		if err == nil && busy == "" {
			c.rec.with(func(h *History) { h.Quiet = time.Now() })
			break
		}
		if err != nil {
			busy = err.Error()
		}
		if busy != last {
			c.cfg.Logf("settling: %s", busy)
			last = busy
		}
		if time.Now().After(deadline) {
			c.rec.with(func(h *History) { h.SettleTimedOut = true })
			c.rec.event("settle-timeout", "", "still busy after %s: %s", c.cfg.Settle, busy)
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	// A last look at what each master shows, once the propagation bound
	// has passed.
	time.Sleep(time.Second)
	for _, m := range c.masters {
		c.sampleLists(m)
		c.sampleServices(m)
	}
	c.rec.with(func(h *History) { h.Settled = time.Now() })
	c.rec.event("settled", "", "")
}

// busy describes what work is still outstanding, or returns "".
func (c *campaign) busy() (string, error) {
	var pending, running, live int
	var lastRecorded bool
	head := ""
	c.rec.with(func(h *History) {
		if len(h.Pushes) > 0 {
			head = h.Pushes[len(h.Pushes)-1].Revision
		}
	})
	err := c.query(func(conn *pgx.Conn) error {
		ctx := context.Background()
		err := conn.QueryRow(ctx, `SELECT
			(SELECT count(*) FROM build_requests WHERE state IN ('pending', 'claimed')),
			(SELECT count(*) FROM builds WHERE state <> 'finished'),
			(SELECT count(*) FROM masters WHERE state = 'alive'),
			(SELECT count(*) > 0 FROM changes WHERE revision = $1 OR $1 = '')`, head).
			Scan(&pending, &running, &live, &lastRecorded)
		return err
	})
	if err != nil {
		return "", err
	}
	var parts []string
	if pending > 0 {
		parts = append(parts, fmt.Sprintf("%d requests pending or claimed", pending))
	}
	if running > 0 {
		parts = append(parts, fmt.Sprintf("%d builds not finished", running))
	}
	if live != len(c.masters) {
		parts = append(parts, fmt.Sprintf("%d masters alive", live))
	}
	if !lastRecorded {
		parts = append(parts, "the last push is not recorded yet")
	}
	return strings.Join(parts, ", "), nil
}

// collect reads the database, the marker files and the masters' logs
// into the history.
func (c *campaign) collect() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	final, err := readFinal(ctx, c.dbURL)
	if err != nil {
		c.t.Fatal(err)
	}
	markers, err := ParseMarkers(c.markDir)
	if err != nil {
		c.t.Fatal(err)
	}
	var lines []LogLine
	var runs []ProcessRun
	for i, n := range c.nodes() {
		for _, p := range n.allRuns() {
			log := p.Stderr()
			if i < len(c.masters) {
				lines = append(lines, ParseServiceLog(p.Name(), log)...)
			}
			r := ProcessRun{Process: p.Name()}
			var last time.Time
			r.Started, last = runSpan(log)
			if p.Exited() {
				r.Ended = last
			}
			runs = append(runs, r)
		}
	}
	c.rec.with(func(h *History) {
		h.Final, h.Markers, h.Services, h.Runs = final, markers, lines, runs
		for _, l := range lines {
			detail := l.Msg
			if l.Service != "" {
				detail += fmt.Sprintf(" service=%s token=%d", l.Service, l.Token)
			}
			h.Events = append(h.Events, Event{At: l.At, Kind: "log", Target: l.Process, Detail: detail})
		}
	})
}

// saveLogs writes every process's output into dir, one file per run.
func (c *campaign) saveLogs(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, n := range c.nodes() {
		for _, p := range n.allRuns() {
			if err := os.WriteFile(filepath.Join(dir, p.Name()+".log"), []byte(p.Stdout()+p.Stderr()), 0o644); err != nil {
				return err
			}
		}
	}
	data, _ := os.ReadFile(c.pg.LogPath())
	return os.WriteFile(filepath.Join(dir, "postgres.log"), data, 0o644)
}

// nodes returns the masters, then the workers.
func (c *campaign) nodes() []*node {
	var out []*node
	for _, m := range c.masters {
		out = append(out, &m.node)
	}
	return append(out, c.workers...)
}
