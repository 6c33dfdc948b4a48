package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// markCommand is a step that records, in the file named by $MARKS, when
// it started and ended holding what it holds.
const markCommand = `echo "$REGENT_BUILDER start $(date +%s%N)" >> "$MARKS"; sleep 0.2; ` +
	`echo "$REGENT_BUILDER end $(date +%s%N)" >> "$MARKS"`

// lockConfig has builders a and b sharing the builder lock hw, and
// builders c and d whose second step shares the step lock db; each builder
// has its own worker.
func lockConfig(hwMarks, dbMarks string) string {
	return fmt.Sprintf(`
lock(name = "hw", max_holders = 1)
lock(name = "db", max_holders = 1)
for n in ["a", "b", "c", "d"]:
    worker(name = "w" + n, password = secret("w" + n))
for n in ["a", "b"]:
    builder(name = n, workers = ["w" + n], locks = ["hw"], env = {"MARKS": %q},
            steps = [step.shell(name = "use", command = %q)])
for n in ["c", "d"]:
    builder(name = n, workers = ["w" + n], env = {"MARKS": %q}, steps = [
        step.shell(name = "prepare", command = "true"),
        step.shell(name = "use", command = %q, locks = ["db"]),
    ])
scheduler.force(name = "force", builders = ["a", "b", "c", "d"])
`, hwMarks, markCommand, dbMarks, markCommand)
}

// interval is when one build held a lock, in nanoseconds.
type interval struct {
	who        string
	start, end int64
}

// holdIntervals reads a marks file written by markCommand.
func holdIntervals(t *testing.T, path string) []interval {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	open := map[string]int64{}
	var out []interval
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			t.Fatalf("bad mark line %q", line)
		}
		ns, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			t.Fatalf("bad mark line %q", line)
		}
		switch f[1] {
		case "start":
			if _, dup := open[f[0]]; dup {
				t.Fatalf("builder %s started twice without ending: two holders of one lock", f[0])
			}
			open[f[0]] = ns
		case "end":
			out = append(out, interval{f[0], open[f[0]], ns})
			delete(open, f[0])
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].start < out[j].start })
	return out
}

// checkExclusive fails t if two intervals overlap, and returns the
// smallest gap between one holder's end and the next one's start.
func checkExclusive(t *testing.T, lock string, iv []interval, want int) time.Duration {
	t.Helper()
	if len(iv) != want {
		t.Fatalf("lock %s: %d holds recorded, want %d", lock, len(iv), want)
	}
	gap := time.Duration(1 << 62)
	for i := 1; i < len(iv); i++ {
		if iv[i].start < iv[i-1].end {
			t.Fatalf("lock %s held twice at once: %s from %d to %d and %s from %d",
				lock, iv[i-1].who, iv[i-1].start, iv[i-1].end, iv[i].who, iv[i].start)
		}
		gap = min(gap, time.Duration(iv[i].start-iv[i-1].end))
	}
	return gap
}

// C20: two builders on two masters share a lock of one holder; ten builds
// of each are queued. At no moment do two builds hold it, whichever master
// dispatched them. The same holds for a step lock shared by two builders.
func TestLocksAcrossMastersC20(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	hw, db := filepath.Join(dir, "hw.marks"), filepath.Join(dir, "db.marks")
	f := newFarm(t, lockConfig(hw, db), farmOptions{postgres: true, masters: 2,
		workers: []string{"wa", "wb", "wc", "wd"}, args: []string{"--worker-ttl", "10s"}})
	// Each builder's worker talks to one master: a and c through m0, b and
	// d through m1.
	for i, w := range []string{"wa", "wb", "wc", "wd"} {
		f.worker(w, t.TempDir(), i%2)
	}
	var requests []int64
	for range 10 {
		for i, b := range []string{"a", "b", "c", "d"} {
			requests = append(requests, f.forceOn(i%2, b))
		}
	}
	start := time.Now()
	for _, r := range requests {
		b := f.waitFinished(f.buildOf(r, 90*time.Second), 90*time.Second)
		if result(b) != "success" {
			t.Fatalf("build %d of %s: %s (%s)", b.ID, b.Builder, result(b), b.Reason)
		}
	}
	gapHW := checkExclusive(t, "hw", holdIntervals(t, hw), 20)
	gapDB := checkExclusive(t, "db", holdIntervals(t, db), 20)
	t.Logf("40 builds in %s; smallest hand-over gap: builder lock %s, step lock %s",
		time.Since(start).Round(time.Millisecond), gapHW.Round(time.Millisecond), gapDB.Round(time.Millisecond))
	if h, err := f.openStore().LockHolders(t.Context()); err != nil || len(h) != 0 {
		t.Fatalf("lock holders after every build ended: %+v, %v", h, err)
	}
}

// C21: a build holding a lock is on a worker that is killed, and the
// master that dispatched it is killed too. The lock is released within
// the worker liveness bound, and the build waiting for it proceeds
// through the other master.
func TestLockReleasedAfterWorkerAndMasterDieC21(t *testing.T) {
	t.Parallel()
	pid := pidFile(t)
	star := fmt.Sprintf(`
lock(name = "hw")
worker(name = "wa", password = secret("wa"))
worker(name = "wb", password = secret("wb"))
builder(name = "a", workers = ["wa"], locks = ["hw"],
        steps = [step.shell(name = "hold", command = "echo $$ > %s; echo holding; sleep 60")])
builder(name = "b", workers = ["wb"], locks = ["hw"],
        steps = [step.shell(name = "next", command = "echo got-it")])
scheduler.force(name = "force", builders = ["a", "b"])
`, pid)
	const ttl = 3 * time.Second
	f := newFarm(t, star, farmOptions{postgres: true, masters: 2, workers: []string{"wa", "wb"},
		args: []string{"--worker-ttl", ttl.String()}})
	wa := f.worker("wa", t.TempDir(), 0)
	f.worker("wb", t.TempDir(), 1)

	holder := f.buildOf(f.forceOn(0, "a"), 30*time.Second)
	f.waitLog(holder, 1, "holding", 30*time.Second)
	waiting := f.forceOn(1, "b")
	time.Sleep(time.Second)
	var r struct {
		State string `json:"state"`
	}
	getJSON(t, fmt.Sprintf("%s/api/v1/requests/%d", f.url(1), waiting), &r)
	if r.State != "pending" {
		t.Fatalf("b's request is %s while a holds the lock, want pending", r.State)
	}

	if err := wa.Kill(); err != nil {
		t.Fatal(err)
	}
	f.kill(0)
	killed := time.Now()
	next := f.waitFinished(f.buildOf(waiting, 60*time.Second), 60*time.Second)
	took := time.Since(killed)
	if result(next) != "success" {
		t.Fatalf("the waiting build: %s (%s)", result(next), next.Reason)
	}
	lost := f.build(holder)
	if result(lost) != "exception" || !strings.Contains(lost.Reason, "worker") {
		t.Fatalf("the holder's build: %s (%q), want exception naming the lost worker", result(lost), lost.Reason)
	}
	// The liveness bound is the time-to-live plus the 5 s between expiry
	// rounds; allow a generous multiple.
	t.Logf("the waiting build finished %s after the holder's worker and master died (ttl %s)",
		took.Round(time.Millisecond), ttl)
	if took > 4*(ttl+5*time.Second) {
		t.Fatalf("the lock took %s to be released", took)
	}
}
