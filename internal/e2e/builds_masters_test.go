package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/regent-ci/regent/internal/store"
)

// tickCommand prints the time in nanoseconds every half second, n times.
func tickCommand(n int) string {
	return fmt.Sprintf(`i=0; while [ $i -lt %d ]; do echo tick $i $(date +%%s%%N); i=$((i+1)); sleep 0.5; done`, n)
}

// ticks reads the ticks of a log written by tickCommand.
func ticks(t *testing.T, log string) []time.Time {
	t.Helper()
	var out []time.Time
	for i, line := range strings.Split(strings.TrimSuffix(log, "\n"), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != "tick" || f[1] != strconv.Itoa(i) {
			t.Fatalf("log line %d is %q, want tick %d: bytes are missing, doubled or out of order", i, line, i)
		}
		ns, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, time.Unix(0, ns))
	}
	return out
}

// Must-show 1: a build running a 20-second step, whose dispatching master
// is killed with SIGKILL, finishes with its real result and a complete log
// through another master; and a step's timeout, counted on the worker, is
// not restarted by the change of master.
func TestBuildSurvivesItsMasterKilled(t *testing.T) {
	t.Parallel()
	star := fmt.Sprintf(`
worker(name = "w1", password = secret("w1"))
worker(name = "w2", password = secret("w2"))
builder(name = "long", workers = ["w1"], retry_lost = True,
        steps = [step.shell(name = "ticks", command = %q, timeout = "60s")])
builder(name = "limited", workers = ["w2"],
        steps = [step.shell(name = "ticks", command = %q, timeout = "10s")])
scheduler.force(name = "force", builders = ["long", "limited"])
`, tickCommand(40), tickCommand(60))
	f := newFarm(t, star, farmOptions{postgres: true, masters: 2, workers: []string{"w1", "w2"},
		args: []string{"--worker-ttl", "10s"}})
	// Both workers talk to m0 first, so m0 dispatches both builds.
	f.worker("w1", t.TempDir(), 0, 1)
	f.worker("w2", t.TempDir(), 0, 1)
	long := f.buildOf(f.forceOn(0, "long"), 30*time.Second)
	limited := f.buildOf(f.forceOn(0, "limited"), 30*time.Second)
	for _, id := range []int64{long, limited} {
		if b := f.build(id); b.Properties["worker"] == "" {
			t.Fatalf("build %d has no worker", id)
		}
	}
	f.waitLog(long, 1, "tick 8 ", 30*time.Second)
	f.kill(0)
	t.Logf("killed m0 at about 4 s into the 20 s step")

	b := f.waitFinished(long, 60*time.Second)
	if result(b) != "success" || b.RetryOf != nil {
		t.Fatalf("the long build: %s (%q), retry of %v; want success, not retried", result(b), b.Reason, b.RetryOf)
	}
	if tk := ticks(t, f.stepLog(long, 1)); len(tk) != 40 {
		t.Fatalf("the long build's log has %d ticks, want all 40", len(tk))
	}
	b = f.waitFinished(limited, 60*time.Second)
	if result(b) != "failure" || !strings.Contains(b.Reason, "timed out after 10s") {
		t.Fatalf("the limited build: %s (%q), want failure by its 10 s timeout", result(b), b.Reason)
	}
	tk := ticks(t, f.stepLog(limited, 1))
	if ran := tk[len(tk)-1].Sub(tk[0]); ran > 11*time.Second {
		t.Fatalf("the limited step ran %s: its timeout was restarted by the change of master", ran)
	}
	if builds := builds(t, f.url(1)); len(builds) != 2 {
		t.Fatalf("%d builds listed, want the 2 forced", len(builds))
	}
}

// C06: two masters share a database; a build runs on a worker dispatched
// by master A. Master B is restarted, then master A. The build continues
// and finishes with its real result; it is never marked retry or lost.
func TestRestartBothMastersDuringABuildC06(t *testing.T) {
	t.Parallel()
	star := fmt.Sprintf(`
worker(name = "w1", password = secret("w1"))
builder(name = "long", workers = ["w1"], retry_lost = True,
        steps = [step.shell(name = "ticks", command = %q)])
scheduler.force(name = "force", builders = ["long"])
`, tickCommand(24))
	f := newFarm(t, star, farmOptions{postgres: true, masters: 2, workers: []string{"w1"},
		args: []string{"--worker-ttl", "5s"}})
	f.worker("w1", t.TempDir(), 0, 1)
	id := f.buildOf(f.forceOn(0, "long"), 30*time.Second)
	f.waitLog(id, 1, "tick 2 ", 30*time.Second)
	for _, i := range []int{1, 0} {
		if err := f.masters[i].proc.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := f.masters[i].proc.Wait(30 * time.Second); err != nil {
			t.Fatal(err)
		}
		f.restart(i)
		if b := f.build(id); b.State != "running" {
			t.Fatalf("after restarting %s the build is %s (%s): %q", f.masters[i].name, b.State, result(b), b.Reason)
		}
	}
	b := f.waitFinished(id, 60*time.Second)
	if result(b) != "success" {
		t.Fatalf("build: %s (%q), want success", result(b), b.Reason)
	}
	if n := len(ticks(t, f.stepLog(id, 1))); n != 24 {
		t.Fatalf("log has %d ticks, want 24", n)
	}
	if all := builds(t, f.url(0)); len(all) != 1 {
		t.Fatalf("%d builds, want the one: %+v", len(all), all)
	}
}

// Must-show 3: 500 build requests over 3 masters and 8 workers, with a
// master killed and restarted during the run. Every request ends exactly
// once: each is complete through one successful build, and no step
// command ran twice for one attempt (each run appends a line to a marker
// file named after its build).
func TestFiveHundredRequestsThroughMasterDeath(t *testing.T) {
	t.Parallel()
	marks := t.TempDir()
	var workers []string
	for i := range 8 {
		workers = append(workers, fmt.Sprintf("w%d", i))
	}
	star := fmt.Sprintf(`
names = %s
for n in names:
    worker(name = n, password = secret(n), max_builds = 2)
builder(name = "many", workers = names, steps = [step.shell(name = "mark",
        command = "echo $REGENT_BUILD_ID >> %s/$REGENT_BUILD_ID; sleep 0.05")])
scheduler.force(name = "force", builders = ["many"])
`, pyList(workers), marks)
	f := newFarm(t, star, farmOptions{postgres: true, masters: 3, workers: workers,
		args: []string{"--worker-ttl", "10s"}})
	for i, w := range workers {
		// Each worker starts with a different master.
		f.worker(w, t.TempDir(), i%3, (i+1)%3, (i+2)%3)
	}

	// Three clients force the requests, one through each master, moving
	// to the next master when theirs is down; meanwhile m1 is killed once
	// builds are flowing, and brought back a little later.
	const total = 500
	var mu sync.Mutex
	var requests []int64
	var errs []error
	var wg sync.WaitGroup
	for m := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := total / 3
			if m == 0 {
				n += total % 3
			}
			for i := range n {
				r, err := forceAny(f, (m+i)%3, "many")
				mu.Lock()
				requests, errs = append(requests, r), append(errs, err)
				mu.Unlock()
			}
		}()
	}
	start := time.Now()
	eventually(t, 60*time.Second, func() error {
		if n := countFiles(t, marks); n < 100 {
			return fmt.Errorf("%d builds ran so far", n)
		}
		return nil
	})
	f.kill(1)
	atKill := countFiles(t, marks)
	time.Sleep(2 * time.Second)
	f.restart(1)
	atRestart := countFiles(t, marks)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(requests) != total {
		t.Fatalf("%d requests forced, want %d", len(requests), total)
	}

	type request struct {
		State string `json:"state"`
		Build *int64 `json:"build"`
	}
	eventually(t, 3*time.Minute, func() error {
		var l struct {
			Items []request `json:"items"`
		}
		getJSON(t, f.anyURL()+"/api/v1/requests?state=pending&limit=500", &l)
		var c struct {
			Items []request `json:"items"`
		}
		getJSON(t, f.anyURL()+"/api/v1/requests?state=claimed&limit=500", &c)
		if n := len(l.Items) + len(c.Items); n > 0 {
			return fmt.Errorf("%d requests not complete yet", n)
		}
		return nil
	})
	took := time.Since(start)

	// A force whose answer was lost when m1 died was sent again through
	// another master, which makes one more request: every request stored
	// is checked, and each forced one must be among them.
	all, err := f.openStore().Requests(t.Context(), store.RequestFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	stored := map[int64]bool{}
	seen := map[int64]bool{}
	retried := 0
	for _, r := range all {
		stored[r.ID] = true
		if r.State != store.RequestComplete || r.Build == nil {
			t.Fatalf("request %d: %s, build %v; want complete with a build", r.ID, r.State, r.Build)
		}
		if seen[*r.Build] {
			t.Fatalf("build %d ran two requests", *r.Build)
		}
		seen[*r.Build] = true
		b := f.build(*r.Build)
		if result(b) != "success" {
			t.Fatalf("request %d's build %d: %s (%q)", r.ID, b.ID, result(b), b.Reason)
		}
		// The only retries allowed are of builds a dying master handed
		// out in an answer that never reached the worker: they never ran.
		for p := b.RetryOf; p != nil; {
			lost := f.build(*p)
			if result(lost) != "retry" || !strings.Contains(lost.Reason, "never received") {
				t.Fatalf("request %d was retried after build %d: %s (%q)", r.ID, lost.ID, result(lost), lost.Reason)
			}
			if _, err := os.Stat(filepath.Join(marks, strconv.FormatInt(lost.ID, 10))); err == nil {
				t.Fatalf("build %d, said never received, ran its step", lost.ID)
			}
			retried++
			p = lost.RetryOf
		}
		data, err := os.ReadFile(filepath.Join(marks, strconv.FormatInt(b.ID, 10)))
		if err != nil || string(data) != fmt.Sprintf("%d\n", b.ID) {
			t.Fatalf("build %d's step ran %q times (%v), want once", b.ID, data, err)
		}
	}
	for _, r := range requests {
		if !stored[r] {
			t.Fatalf("forced request %d is not stored", r)
		}
	}
	if n := countFiles(t, marks); n != len(all) {
		t.Fatalf("%d builds ran a step, for %d requests", n, len(all))
	}
	t.Logf("%d requests (%d forced again after a lost answer) ran once each in %s through 3 masters "+
		"and 8 workers; m1 was killed after %d builds and back after %d; %d builds handed out by m1 "+
		"as it died were retried", len(all), len(all)-total, took.Round(time.Millisecond), atKill,
		atRestart, retried)
}

// forceAny forces a build of builder through master first, or the next
// ones when it does not answer, and returns the request id. It may run
// outside the test's goroutine.
func forceAny(f *farm, first int, builder string) (int64, error) {
	var last error
	for i := range len(f.masters) {
		m := f.masters[(first+i)%len(f.masters)]
		resp, err := http.Post(m.base+"/api/v1/builders/"+builder+"/force", "application/json",
			strings.NewReader(`{"reason": "test"}`))
		if err != nil {
			last = err
			continue
		}
		var bs buildset
		err = json.NewDecoder(resp.Body).Decode(&bs)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusCreated || len(bs.Requests) != 1 {
			last = fmt.Errorf("force %s through %s: status %d, %v", builder, m.name, resp.StatusCode, err)
			continue
		}
		return bs.Requests[0].ID, nil
	}
	return 0, last
}

func countFiles(t *testing.T, dir string) int {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}
