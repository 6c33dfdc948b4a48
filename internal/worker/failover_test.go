package worker

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/regent-ci/regent/internal/build"
)

// The worker logs in through whichever master answers, and a build whose
// master goes away mid-step is delivered through another one.
func TestFailoverBetweenMasters(t *testing.T) {
	t.Parallel()
	c := newFakeCluster(t)
	a1, a2 := c.addMaster("m1"), c.addMaster("m2")
	startWorker(t, testConfig(t, deadURL(t), a1.URL(), a2.URL()))
	goFile := filepath.Join(t.TempDir(), "go")

	a := newBuild(
		shell(fmt.Sprintf(`echo one; while [ ! -e %q ]; do sleep 0.01; done; seq 1 20000`, goFile)),
		shell("echo two"),
	)
	c.assign(a)
	c.waitFor(10*time.Second, "the first output", func() bool {
		s := c.builds[a.BuildID].steps[1]
		return s != nil && len(s.log) > 0
	})
	if a2.hits.Load() != 0 {
		t.Fatalf("m2 was used while m1 answered")
	}

	a1.setDown(true)
	if err := os.WriteFile(goFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	b := c.waitFinished(a.BuildID, 30*time.Second)
	checkResult(t, b, build.Success, "")
	var want strings.Builder
	want.WriteString("one\n")
	for i := 1; i <= 20000; i++ {
		fmt.Fprintf(&want, "%d\n", i)
	}
	checkLog(t, b, 1, []byte(want.String()))
	checkLog(t, b, 2, []byte("two\n"))
	if a2.hits.Load() == 0 {
		t.Fatal("the build finished without m2")
	}

	// C11: the worker comes back to a master that returns, without any
	// restart, once the other one fails too.
	a1.setDown(false)
	a2.setDown(true)
	next := newBuild(shell("echo back"))
	c.assign(next)
	checkLog(t, c.waitFinished(next.BuildID, 30*time.Second), 1, []byte("back\n"))
}

// A poll answered 401 means the session ended: the worker opens a new one
// and takes builds again.
func TestLogsInAgainWhenTheSessionEnds(t *testing.T) {
	t.Parallel()
	c, _, _ := newCluster(t)
	c.waitFor(10*time.Second, "a poll", func() bool { return c.polls > 0 })

	c.endSessions()
	c.waitFor(10*time.Second, "a second login", func() bool { return c.logins == 2 })
	a := newBuild(shell("echo after login"))
	c.assign(a)
	b := c.waitFinished(a.BuildID, 20*time.Second)
	checkLog(t, b, 1, []byte("after login\n"))
}

// A session that ends while a build reports (a 401 on a build write) is
// replaced, and the report goes on under the new session.
func TestBuildWritesWaitForANewSession(t *testing.T) {
	t.Parallel()
	c, _, _ := newCluster(t)
	goFile := filepath.Join(t.TempDir(), "go")
	a := newBuild(shell(fmt.Sprintf(`echo one; while [ ! -e %q ]; do sleep 0.01; done; echo two`, goFile)))
	c.assign(a)
	c.waitFor(10*time.Second, "the first output", func() bool {
		s := c.builds[a.BuildID].steps[1]
		return s != nil && len(s.log) > 0
	})

	c.endSessions()
	if err := os.WriteFile(goFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	b := c.waitFinished(a.BuildID, 20*time.Second)
	checkResult(t, b, build.Success, "")
	checkLog(t, b, 1, []byte("one\ntwo\n"))
	if c.logins < 2 {
		t.Fatalf("%d logins, want a new session after the old one ended", c.logins)
	}
}

// A worker whose credentials are refused keeps trying, says so in its
// log, and gets in once the master accepts them.
func TestRefusedCredentialsAreRetried(t *testing.T) {
	t.Parallel()
	c := newFakeCluster(t)
	c.password = "rotated"
	m := c.addMaster("m1")
	cfg := testConfig(t, m.URL())
	var mu sync.Mutex
	var msgs []string
	cfg.Logger = slog.New(recordingHandler{cfg.Logger.Handler(), &mu, &msgs})
	startWorker(t, cfg)

	c.waitFor(10*time.Second, "three refused logins", func() bool { return c.refused >= 3 })
	mu.Lock()
	said := strings.Join(msgs, "\n")
	mu.Unlock()
	if !strings.Contains(said, "WARN the master refuses this worker's name or password") {
		t.Fatalf("the worker did not say why it cannot log in; it said:\n%s", said)
	}

	c.update(func() { c.password = cfg.Password })
	a := newBuild(shell("echo in"))
	c.assign(a)
	checkLog(t, c.waitFinished(a.BuildID, 20*time.Second), 1, []byte("in\n"))
}

// MaxBuilds builds run at once; a full worker hears of a free slot at
// once, not at the end of its long poll.
func TestMaxBuildsRunConcurrently(t *testing.T) {
	t.Parallel()
	c := newFakeCluster(t)
	c.pollTimeout = 60 // a finished build must not wait for the poll to end
	m := c.addMaster("m1")
	cfg := testConfig(t, m.URL())
	cfg.MaxBuilds = 2
	startWorker(t, cfg)
	dir := t.TempDir()
	goFile := filepath.Join(dir, "go")

	var builds []int64
	for i := range 3 {
		a := newBuild(shell(fmt.Sprintf(`touch %q; while [ ! -e %q ]; do sleep 0.01; done`,
			filepath.Join(dir, fmt.Sprint("started-", i)), goFile)))
		a.Builder = fmt.Sprint("builder-", i)
		builds = append(builds, a.BuildID)
		c.assign(a)
	}
	waitUntil(t, 10*time.Second, "two builds to start", func() bool {
		n := 0
		for i := range 3 {
			if _, err := os.Stat(filepath.Join(dir, fmt.Sprint("started-", i))); err == nil {
				n++
			}
		}
		return n == 2
	})
	c.waitFor(10*time.Second, "a full worker's poll", func() bool {
		return len(c.lastPoll.Running) == 2 && c.lastPoll.Capacity == 0 && len(c.queue) == 1
	})

	if err := os.WriteFile(goFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, id := range builds {
		checkResult(t, c.waitFinished(id, 20*time.Second), build.Success, "")
	}
}

// Two builds of one builder never share its directory at the same time.
func TestBuildsOfOneBuilderTakeTurns(t *testing.T) {
	t.Parallel()
	c := newFakeCluster(t)
	m := c.addMaster("m1")
	cfg := testConfig(t, m.URL())
	cfg.MaxBuilds = 2
	startWorker(t, cfg)

	step := shell(`if [ -e busy ]; then echo overlap; exit 1; fi; touch busy; sleep 0.3; rm busy`)
	a, b := newBuild(step), newBuild(step)
	c.assign(a, b)
	for _, id := range []int64{a.BuildID, b.BuildID} {
		checkResult(t, c.waitFinished(id, 20*time.Second), build.Success, "")
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	good := func() Config {
		return Config{Masters: []string{"http://127.0.0.1:1/"}, Name: "w", Basedir: t.TempDir()}
	}
	for _, tc := range []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"no masters", func(c *Config) { c.Masters = nil }, "Masters"},
		{"not a URL", func(c *Config) { c.Masters = []string{"127.0.0.1:8010"} }, "Masters[0]"},
		{"no name", func(c *Config) { c.Name = "" }, "Name"},
		{"no basedir", func(c *Config) { c.Basedir = "" }, "Basedir"},
		{"negative", func(c *Config) { c.KillGrace = -time.Second }, "negative"},
		{"backoff", func(c *Config) { c.BackoffMin, c.BackoffMax = time.Minute, time.Second }, "BackoffMin"},
	} {
		cfg := good()
		tc.change(&cfg)
		if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: New() error = %v, want one naming %q", tc.name, err, tc.want)
		}
	}

	w, err := New(good())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	got := w.cfg
	if got.MaxBuilds != 1 || got.SpoolLimit != 1<<30 || got.KillGrace != 10*time.Second ||
		got.BackoffMin != 100*time.Millisecond || got.BackoffMax != 5*time.Second ||
		got.Masters[0] != "http://127.0.0.1:1" || !filepath.IsAbs(got.Basedir) {
		t.Errorf("defaults not applied: %+v", got)
	}
	w.Stop() // before Start: ends at once
	if err := w.Start(t.Context()); err == nil {
		t.Error("Start after Stop succeeded")
	}
}

func TestBackoffIsJitteredAndCapped(t *testing.T) {
	t.Parallel()
	bo := newBackoff(100*time.Millisecond, time.Second)
	for i := range 10 {
		d := bo.next()
		base := min(100*time.Millisecond<<i, time.Second) // 100ms, 200ms, ... 1s, 1s
		if d < base/2 || d > base {
			t.Fatalf("attempt %d: delay %s outside [%s, %s]", i, d, base/2, base)
		}
	}
	bo.reset()
	if d := bo.next(); d > 100*time.Millisecond {
		t.Fatalf("after reset the delay is %s, want at most the minimum", d)
	}
}

// Without its own MaxBuilds a worker takes the max_builds the master
// reports at login; with one, it keeps its own.
func TestMaxBuildsFromTheMaster(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name              string
		own, master, want int
	}{
		{"master's", 0, 3, 3},
		{"own beats master's", 1, 3, 1},
		{"default when the master says nothing", 0, 0, DefaultMaxBuilds},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newFakeCluster(t)
			c.maxBuilds = tc.master
			cfg := testConfig(t, c.addMaster("m1").URL())
			cfg.MaxBuilds = tc.own
			startWorker(t, cfg)
			c.waitFor(10*time.Second, "a poll", func() bool { return c.polls > 0 })
			c.mu.Lock()
			got := c.lastPoll.Capacity
			c.mu.Unlock()
			if got != tc.want {
				t.Errorf("idle worker polls with capacity %d, want %d", got, tc.want)
			}
		})
	}
}
