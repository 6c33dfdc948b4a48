package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/regent-ci/regent/internal/testutil/procs"
	"github.com/regent-ci/regent/internal/testutil/proxy"
)

// workerTTL is the worker time-to-live of the masters in these tests. A
// lost worker is noticed within it plus the 5 s between expiry rounds.
const workerTTL = 3 * time.Second

// livenessBound is a generous multiple of how long a lost worker takes to
// be noticed.
const livenessBound = 4 * (workerTTL + 5*time.Second)

// C07: a worker is killed with SIGKILL in the middle of a long step. The
// build ends exception with a reason within the liveness bound, never
// running for ever; a build cancelled after its worker died ends
// cancelled.
func TestKilledWorkerEndsItsBuildC07(t *testing.T) {
	t.Parallel()
	pid := pidFile(t)
	f := newFarm(t, oneBuilder(fmt.Sprintf("echo $$ >> %s; echo running; sleep 60", pid)),
		farmOptions{workers: []string{"w1"}, args: []string{"--worker-ttl", workerTTL.String()}})
	basedir := t.TempDir()

	for _, cancel := range []bool{false, true} {
		w := f.worker("w1", basedir)
		id := f.buildOf(f.forceOn(0, "b"), 30*time.Second)
		f.waitLog(id, 1, "running", 30*time.Second)
		if err := w.Kill(); err != nil {
			t.Fatal(err)
		}
		killed := time.Now()
		if cancel {
			code := postJSON(t, fmt.Sprintf("%s/api/v1/builds/%d/cancel", f.url(0), id),
				`{"reason": "no longer needed"}`, nil)
			if code != 200 && code != 202 {
				t.Fatalf("cancel a build whose worker died: status %d", code)
			}
		}
		b := f.waitFinished(id, livenessBound)
		took := time.Since(killed)
		want, reason := "exception", "worker"
		if cancel {
			want, reason = "cancelled", "no longer needed"
		}
		if result(b) != want || !strings.Contains(b.Reason, reason) {
			t.Fatalf("build %d: %s (%q), want %s with a reason naming %q", id, result(b), b.Reason, want, reason)
		}
		t.Logf("killed worker's build ended %s %s after the kill (ttl %s)", result(b),
			took.Round(time.Millisecond), workerTTL)
	}
}

// C08: a worker vanishes mid-build and the builder retries lost builds.
// The retry is a new build linked to the lost one; the lost attempt keeps
// its steps and logs; the retry starts from the first step on a clean
// workspace.
func TestLostBuildIsRetriedC08(t *testing.T) {
	t.Parallel()
	pid := pidFile(t)
	hold := filepath.Join(t.TempDir(), "hold")
	writeFile(t, hold, "")
	star := fmt.Sprintf(`
worker(name = "w1", password = secret("w1"))
builder(name = "r", workers = ["w1"], retry_lost = True, steps = [
    step.shell(name = "first", command = "test ! -e leftover || { echo dirty workspace; exit 1; }; touch leftover; echo first-ran"),
    step.shell(name = "second", command = "echo $$ >> %s; echo holding; while [ -e %s ]; do sleep 0.1; done; echo second-ran"),
])
scheduler.force(name = "force", builders = ["r"])
`, pid, hold)
	f := newFarm(t, star, farmOptions{workers: []string{"w1"}, args: []string{"--worker-ttl", workerTTL.String()}})
	basedir := t.TempDir()
	w := f.worker("w1", basedir)
	request := f.forceOn(0, "r")
	lost := f.buildOf(request, 30*time.Second)
	f.waitLog(lost, 2, "holding", 30*time.Second)
	if err := w.Kill(); err != nil {
		t.Fatal(err)
	}
	os.Remove(hold)
	// The same worker comes back at once: its new session supersedes the
	// old one, whose build is retried without waiting for the time-to-live.
	f.worker("w1", basedir)

	var retry int64
	eventually(t, livenessBound, func() error {
		for _, b := range builds(t, f.url(0)) {
			if b.RetryOf != nil && *b.RetryOf == lost {
				retry = b.ID
				return nil
			}
		}
		return fmt.Errorf("no retry of build %d yet", lost)
	})
	rb := f.waitFinished(retry, 60*time.Second)
	if result(rb) != "success" {
		t.Fatalf("retry %d: %s (%s); first step's log %q", retry, result(rb), rb.Reason, f.stepLog(retry, 1))
	}
	if log := f.stepLog(retry, 1); log != "first-ran\n" {
		t.Fatalf("the retry's first step on a clean workspace logged %q", log)
	}
	lb := f.build(lost)
	if result(lb) != "retry" || !strings.Contains(lb.Reason, "worker") {
		t.Fatalf("lost build: %s (%q), want retry naming the worker", result(lb), lb.Reason)
	}
	var steps stepList
	getJSON(t, fmt.Sprintf("%s/api/v1/builds/%d/steps", f.url(0), lost), &steps)
	if len(steps.Items) != 2 || f.stepLog(lost, 1) != "first-ran\n" || f.stepLog(lost, 2) != "holding\n" {
		t.Fatalf("the lost attempt's steps %+v and logs %q, %q were not kept", steps.Items,
			f.stepLog(lost, 1), f.stepLog(lost, 2))
	}
	var req struct {
		State string `json:"state"`
		Build *int64 `json:"build"`
	}
	getJSON(t, fmt.Sprintf("%s/api/v1/requests/%d", f.url(0), request), &req)
	if req.State != "complete" || req.Build == nil || *req.Build != retry {
		t.Fatalf("request %d: %+v, want complete through the retry %d", request, req, retry)
	}
}

// C09: the worker's connection to its master is cut (a proxy drops all
// traffic) for a few seconds while it is idle, and again while it runs a
// build. It is usable again as soon as the network is back, without a
// restart, and the build finishes with its full log.
func TestWorkerReconnectsAfterABlipC09(t *testing.T) {
	t.Parallel()
	f := newFarm(t, oneBuilder(`for i in $(seq 1 40); do echo line $i; sleep 0.1; done`),
		farmOptions{workers: []string{"w1"}, args: []string{"--worker-ttl", "15s"}})
	p := proxy.Start(t, f.masters[0].addr)
	f.workerVia("w1", t.TempDir(), "http://"+p.Addr())
	f.waitWorker("w1", "idle", 30*time.Second)
	var want strings.Builder
	for i := 1; i <= 40; i++ {
		fmt.Fprintf(&want, "line %d\n", i)
	}

	// Idle: the build is forced while the worker is cut off.
	p.Blackhole()
	request := f.forceOn(0, "b")
	time.Sleep(3 * time.Second)
	p.Pass()
	back := time.Now()
	id := f.buildOf(request, 30*time.Second)
	f.waitLog(id, 1, "line 1\n", 30*time.Second)
	t.Logf("idle blip: the build forced during it logged %s after the network came back",
		time.Since(back).Round(time.Millisecond))
	b := f.waitFinished(id, 60*time.Second)
	if result(b) != "success" || f.stepLog(id, 1) != want.String() {
		t.Fatalf("build after the idle blip: %s, log %q", result(b), f.stepLog(id, 1))
	}

	// Building: the cut comes in the middle of the step's output.
	id = f.buildOf(f.forceOn(0, "b"), 30*time.Second)
	f.waitLog(id, 1, "line 5\n", 30*time.Second)
	p.Blackhole()
	time.Sleep(3 * time.Second)
	p.Pass()
	b = f.waitFinished(id, 60*time.Second)
	if result(b) != "success" || f.stepLog(id, 1) != want.String() {
		t.Fatalf("build cut off mid-step: %s (%s), log %q", result(b), b.Reason, f.stepLog(id, 1))
	}
}

// Must-show 4 of the builds issue: a worker cut off from all masters for
// 20 seconds in the middle of a step producing output. The step runs on;
// after reconnection the log is byte-identical to what the step printed.
func TestWorkerCutOffTwentySecondsMidStep(t *testing.T) {
	t.Parallel()
	f := newFarm(t, oneBuilder(tickCommand(60)), farmOptions{postgres: true, masters: 2,
		workers: []string{"w1"}, args: []string{"--worker-ttl", "60s"}})
	p0, p1 := proxy.Start(t, f.masters[0].addr), proxy.Start(t, f.masters[1].addr)
	f.workerVia("w1", t.TempDir(), "http://"+p0.Addr(), "http://"+p1.Addr())
	id := f.buildOf(f.forceOn(0, "b"), 30*time.Second)
	f.waitLog(id, 1, "tick 4 ", 30*time.Second)
	p0.Blackhole()
	p1.Blackhole()
	cut := f.stepLog(id, 1)
	time.Sleep(20 * time.Second)
	if now := f.stepLog(id, 1); len(now) > len(cut)+64 {
		t.Fatalf("the log grew from %d to %d bytes while the worker was cut off", len(cut), len(now))
	}
	p0.Pass()
	p1.Pass()
	b := f.waitFinished(id, 60*time.Second)
	if result(b) != "success" {
		t.Fatalf("build: %s (%q)", result(b), b.Reason)
	}
	tk := ticks(t, f.stepLog(id, 1))
	if len(tk) != 60 {
		t.Fatalf("log has %d ticks, want all 60 the step printed", len(tk))
	}
	// The step ran on while cut off: its ticks are evenly spaced.
	for i := 1; i < len(tk); i++ {
		if gap := tk[i].Sub(tk[i-1]); gap > 2*time.Second {
			t.Fatalf("ticks %d and %d are %s apart: the step stalled while cut off", i-1, i, gap)
		}
	}
}

// C10: a worker is restarted under the same name while its previous
// session still looks alive (the old process is paused). The new process
// is accepted at once, the old session is superseded, the worker is never
// shown twice, and the old process stops when it wakes.
func TestRollingWorkerRestartC10(t *testing.T) {
	t.Parallel()
	f := newFarm(t, oneBuilder("echo ran on $REGENT_WORKER"),
		farmOptions{workers: []string{"w1"}, args: []string{"--worker-ttl", "30s"}})
	old := f.worker("w1", t.TempDir())
	f.waitWorker("w1", "idle", 30*time.Second)
	if err := old.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { old.Cont() })

	start := time.Now()
	fresh := f.worker("w1", t.TempDir())
	if _, err := fresh.WaitForLine("session started", 10*time.Second); err != nil {
		t.Fatalf("the new process was not accepted: %v", err)
	}
	t.Logf("the new process had a session %s after it started", time.Since(start).Round(time.Millisecond))
	id := f.buildOf(f.forceOn(0, "b"), 10*time.Second)
	if b := f.waitFinished(id, 30*time.Second); result(b) != "success" {
		t.Fatalf("build on the new process: %s (%s)", result(b), b.Reason)
	}
	if _, err := fresh.WaitForLine("build finished", 10*time.Second); err != nil {
		t.Fatalf("the build did not run on the new process: %v", err)
	}
	if ws := f.workers(); len(ws) != 1 || ws[0].Name != "w1" || ws[0].State != "idle" {
		t.Fatalf("workers = %+v, want w1 once, idle", ws)
	}

	if err := old.Cont(); err != nil {
		t.Fatal(err)
	}
	if err := old.Wait(40 * time.Second); err == nil || old.ExitCode() != 2 {
		t.Fatalf("the superseded process: %v (exit %d), want it to stop with status 2", err, old.ExitCode())
	}
	if !strings.Contains(old.Stderr(), "new session") {
		t.Fatalf("the superseded process did not say why it stopped:\n%s", old.Stderr())
	}
	if ws := f.workers(); len(ws) != 1 || ws[0].State != "idle" {
		t.Fatalf("after the old process stopped, workers = %+v, want w1 once, idle", ws)
	}
}

// C11: the master is restarted while workers are idle. Each worker takes
// new builds within a few seconds of the master being back, without being
// restarted.
func TestMasterRestartWithIdleWorkersC11(t *testing.T) {
	t.Parallel()
	star := `
worker(name = "w1", password = secret("w1"))
worker(name = "w2", password = secret("w2"))
builder(name = "b1", workers = ["w1"], steps = [step.shell(command = "echo one")])
builder(name = "b2", workers = ["w2"], steps = [step.shell(command = "echo two")])
scheduler.force(name = "force", builders = ["b1", "b2"])
`
	f := newFarm(t, star, farmOptions{workers: []string{"w1", "w2"}, args: []string{"--ttl", "2s"}})
	f.worker("w1", t.TempDir())
	f.worker("w2", t.TempDir())
	f.waitWorker("w1", "idle", 30*time.Second)
	f.waitWorker("w2", "idle", 30*time.Second)

	for round := range 2 {
		if round == 0 {
			f.kill(0)
		} else if err := f.masters[0].proc.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		} else if err := f.masters[0].proc.Wait(30 * time.Second); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second) // the workers are failing over meanwhile
		f.restart(0)
		back := time.Now()
		r1, r2 := f.forceOn(0, "b1"), f.forceOn(0, "b2")
		for _, r := range []int64{r1, r2} {
			id := f.buildOf(r, 30*time.Second)
			if b := f.waitFinished(id, 30*time.Second); result(b) != "success" {
				t.Fatalf("build %d after the restart: %s (%s)", id, result(b), b.Reason)
			}
		}
		took := time.Since(back)
		t.Logf("round %d: both workers built %s after the master was back", round, took.Round(time.Millisecond))
		if took > 15*time.Second {
			t.Fatalf("the workers took %s to build after the master came back", took)
		}
	}
}

// C03: fifty workers are configured; each worker process is started and
// killed several times, then a configuration removes forty of them. The
// workers list shows exactly the ten configured, each once, with its real
// state, and the stored sessions of a worker that reconnects often stay
// bounded.
func TestWorkerChurnC03(t *testing.T) {
	t.Parallel()
	pid := pidFile(t)
	names := make([]string, 50)
	for i := range names {
		names[i] = fmt.Sprintf("w%02d", i)
	}
	config := func(workers []string) string {
		var b strings.Builder
		fmt.Fprintf(&b, "names = %s\n", pyList(workers))
		b.WriteString("for n in names:\n    worker(name = n, password = secret(n))\n")
		fmt.Fprintf(&b, "builder(name = \"busy\", workers = [\"w03\"], steps = [step.shell("+
			"command = \"echo $$ >> %s; echo busy; sleep 60\")])\n", pid)
		b.WriteString("scheduler.force(name = \"force\", builders = [\"busy\"])\n")
		return b.String()
	}
	f := newFarm(t, config(names), farmOptions{workers: names,
		args: []string{"--worker-ttl", workerTTL.String()}})
	basedirs := map[string]string{}
	for _, n := range names {
		basedirs[n] = t.TempDir()
	}

	// Three rounds of starting every worker, ten at a time, and killing
	// them once connected.
	for range 3 {
		for i := 0; i < len(names); i += 10 {
			batch := names[i : i+10]
			var ps []*procs.Proc
			for _, n := range batch {
				ps = append(ps, f.worker(n, basedirs[n]))
			}
			for _, p := range ps {
				if _, err := p.WaitForLine("session started", 30*time.Second); err != nil {
					t.Fatal(err)
				}
			}
			for _, p := range ps {
				if err := p.Kill(); err != nil {
					t.Fatal(err)
				}
			}
		}
	}

	// Final round: w00 to w03 run, w03 busy; the other kept ones stay dead.
	for _, n := range names[:4] {
		f.worker(n, basedirs[n])
	}
	id := f.buildOf(f.forceOn(0, "busy"), 30*time.Second)
	f.waitLog(id, 1, "busy", 30*time.Second)
	f.apply(config(names[:10]))

	want := map[string]string{"w00": "idle", "w01": "idle", "w02": "idle", "w03": "busy"}
	for _, n := range names[4:10] {
		want[n] = "lost"
	}
	eventually(t, livenessBound, func() error {
		ws := f.workers()
		got := map[string]string{}
		var listed []string
		for _, w := range ws {
			got[w.Name] = w.State
			listed = append(listed, w.Name)
		}
		sort.Strings(listed)
		if len(ws) != 10 || strings.Join(listed, ",") != strings.Join(names[:10], ",") {
			return fmt.Errorf("workers listed: %v, want exactly w00 to w09 once each", listed)
		}
		for n, s := range want {
			if got[n] != s {
				return fmt.Errorf("worker %s is %s, want %s (all: %v)", n, got[n], s, got)
			}
		}
		return nil
	})
	var retired struct {
		Items []apiWorker `json:"items"`
	}
	getJSON(t, f.url(0)+"/api/v1/workers?include=retired", &retired)
	if len(retired.Items) != 50 {
		t.Fatalf("with retired workers the list has %d entries, want 50", len(retired.Items))
	}

	// A worker that reconnects often: twenty more restarts of w00.
	for range 20 {
		p := f.worker("w00", basedirs["w00"])
		if _, err := p.WaitForLine("session started", 30*time.Second); err != nil {
			t.Fatal(err)
		}
		if err := p.Kill(); err != nil {
			t.Fatal(err)
		}
	}
	var sessions int
	err := f.openStore().DB().QueryRowContext(context.Background(), `SELECT count(*)
		FROM worker_sessions s JOIN workers w ON w.id = s.worker_id
		WHERE w.name = 'w00' AND w.retired_generation IS NULL`).Scan(&sessions)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("w00 logged in %d times; %d sessions stored", 3+1+20, sessions)
	if sessions > 11 {
		t.Fatalf("w00 has %d stored sessions after 24 logins, want at most 11", sessions)
	}
}

// pyList renders names as a Starlark list literal.
func pyList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return "[" + strings.Join(q, ", ") + "]"
}
