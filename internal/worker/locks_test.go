package worker

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/regent-ci/regent/internal/build"
	"github.com/regent-ci/regent/internal/config"
)

// lockedStep is a shell step that names the lock "db" and records in
// marks when it ran.
func lockedStep(marks string) config.Step {
	st := shell(fmt.Sprintf(`echo start $(date +%%s%%N) >> %s; sleep 0.3; echo end $(date +%%s%%N) >> %s`,
		marks, marks))
	st.Locks = []string{"db"}
	return st
}

// Two builds on one worker whose steps name the same lock run those steps
// one after the other; the one that waited says so in its log, and the
// lock is given back after each step.
func TestStepLocksSerialiseSteps(t *testing.T) {
	t.Parallel()
	c := newFakeCluster(t)
	m := c.addMaster("m1")
	cfg := testConfig(t, m.URL())
	cfg.MaxBuilds = 2
	startWorker(t, cfg)
	marks := filepath.Join(t.TempDir(), "marks")

	a, b := newBuild(lockedStep(marks)), newBuild(lockedStep(marks))
	b.Builder = "other" // another build directory, so both run at once
	c.assign(a, b)
	fa := c.waitFinished(a.BuildID, 30*time.Second)
	fb := c.waitFinished(b.BuildID, 30*time.Second)
	checkResult(t, fa, build.Success, "")
	checkResult(t, fb, build.Success, "")

	data, err := os.ReadFile(marks)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	var times []int64
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		f := strings.Fields(line)
		ns, _ := strconv.ParseInt(f[1], 10, 64)
		kinds, times = append(kinds, f[0]), append(times, ns)
	}
	if strings.Join(kinds, " ") != "start end start end" || times[2] < times[1] {
		t.Fatalf("the locked steps overlapped: %q", data)
	}
	waited := 0
	for _, fb := range []fakeBuild{fa, fb} {
		if bytes.HasPrefix(fb.stepLog(1), []byte(`[regent: waiting for lock "db"]`)) {
			waited++
		}
	}
	c.mu.Lock()
	holders, waits := len(c.lockHolder), c.lockWaits
	c.mu.Unlock()
	if waited != 1 || waits == 0 || holders != 0 {
		t.Fatalf("%d builds noted a wait (want 1), %d refused acquires, %d locks still held",
			waited, waits, holders)
	}
}

// A build cancelled while its step waits for a lock ends cancelled
// without running the step.
func TestCancelWhileWaitingForALock(t *testing.T) {
	t.Parallel()
	c, _, _ := newCluster(t)
	c.update(func() { c.lockHolder["db"] = -1 }) // held by someone else for ever
	ran := filepath.Join(t.TempDir(), "ran")
	st := shell("touch " + ran)
	st.Locks = []string{"db"}
	a := newBuild(st)
	c.assign(a)
	c.waitFor(10*time.Second, "a refused acquire", func() bool { return c.lockWaits > 0 })
	c.update(func() { c.cancel[a.BuildID] = true })
	fb := c.waitFinished(a.BuildID, 10*time.Second)
	checkResult(t, fb, build.Cancelled, "cancelled")
	if _, err := os.Stat(ran); err == nil {
		t.Fatal("the step ran without its lock")
	}
}
