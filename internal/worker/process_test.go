package worker

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/regent-ci/regent/internal/build"
	"github.com/regent-ci/regent/internal/config"
	"go.uber.org/goleak"
)

// The step's timeout ends the whole process group, a background child
// included, whether or not the processes heed SIGTERM.
func TestTimeoutKillsTheProcessGroup(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, prelude string
	}{
		{"heeds SIGTERM", ""},
		{"ignores SIGTERM", "trap '' TERM; "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, _, _ := newCluster(t)
			dir := t.TempDir()
			shellPID, childPID := filepath.Join(dir, "shell.pid"), filepath.Join(dir, "child.pid")
			step := shell(fmt.Sprintf(`%secho $$ > %q; sleep 300 & echo $! > %q; wait; wait`,
				tc.prelude, shellPID, childPID))
			step.Timeout = config.Duration(time.Second)
			a := newBuild(step, shell("echo never"))
			c.assign(a)

			pids := []int{readPID(t, shellPID), readPID(t, childPID)}
			b := c.waitFinished(a.BuildID, 20*time.Second)
			checkResult(t, b, build.Failure, "timed out after 1s")
			for _, pid := range pids {
				waitUntil(t, 5*time.Second, fmt.Sprintf("process %d to be killed", pid),
					func() bool { return processGone(pid) })
			}
			// A timeout is a failure like any other: without
			// halt_on_failure the next step runs.
			if b.steps[1].result != build.Failure || b.steps[2] == nil ||
				b.steps[2].result != build.Success {
				t.Fatalf("want a failed step then a successful one, got %d steps", len(b.steps))
			}
		})
	}
}

// Processes a step leaves behind in its group are killed when it ends.
func TestLeftoverProcessesAreKilled(t *testing.T) {
	t.Parallel()
	c, _, _ := newCluster(t)
	childPID := filepath.Join(t.TempDir(), "child.pid")
	a := newBuild(shell(fmt.Sprintf(`sleep 300 > /dev/null 2>&1 & echo $! > %q`, childPID)))
	c.assign(a)
	b := c.waitFinished(a.BuildID, 20*time.Second)
	checkResult(t, b, build.Success, "")
	pid := readPID(t, childPID)
	waitUntil(t, 5*time.Second, "the leftover child to be killed", func() bool { return processGone(pid) })
}

func TestNoOutputTimeout(t *testing.T) {
	t.Parallel()
	c, _, _ := newCluster(t)

	silent := shell("echo started; sleep 300")
	silent.NoOutputTimeout = config.Duration(500 * time.Millisecond)
	chatty := shell("for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15; do echo $i; sleep 0.1; done")
	chatty.NoOutputTimeout = config.Duration(700 * time.Millisecond)

	a := newBuild(chatty, silent)
	c.assign(a)
	b := c.waitFinished(a.BuildID, 20*time.Second)
	checkResult(t, b, build.Failure, "no output for 500ms")
	if r := b.steps[1].result; r != build.Success {
		t.Errorf("a step printing every 100ms ended %q under a 700ms silence limit", r)
	}
	checkLog(t, b, 2, []byte("started\n"))
}

// A cancellation stops the running step at once and starts no other.
func TestCancelStopsTheBuildWithinASecond(t *testing.T) {
	t.Parallel()
	c, _, _ := newCluster(t)
	pidFile := filepath.Join(t.TempDir(), "pid")
	a := newBuild(shell(fmt.Sprintf(`echo $$ > %q; exec sleep 300`, pidFile)), shell("echo never"))
	c.assign(a)
	pid := readPID(t, pidFile)

	ordered := time.Now()
	c.update(func() { c.cancel[a.BuildID] = true })
	waitUntil(t, 3*time.Second, "the step to be killed", func() bool { return processGone(pid) })
	t.Logf("step killed %s after the cancel order", time.Since(ordered).Round(time.Millisecond))

	b := c.waitFinished(a.BuildID, 10*time.Second)
	checkResult(t, b, build.Cancelled, "cancelled")
	if len(b.steps) != 1 || b.steps[1].result != build.Cancelled {
		t.Fatalf("want one cancelled step, got %d steps", len(b.steps))
	}
}

// A stop order (the session was superseded) kills the builds, reports
// nothing more and ends the worker with the master's reason.
func TestStopOrderEndsTheWorker(t *testing.T) {
	t.Parallel()
	c, w, _ := newCluster(t)
	pidFile := filepath.Join(t.TempDir(), "pid")
	a := newBuild(shell(fmt.Sprintf(`echo $$ > %q; sleep 300`, pidFile)))
	c.assign(a)
	pid := readPID(t, pidFile)

	c.update(func() { c.stopReason = "superseded by a newer session" })
	select {
	case <-w.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the worker did not stop on the master's order")
	}
	if err := w.Err(); !errors.Is(err, ErrStoppedByMaster) ||
		!strings.Contains(err.Error(), "superseded by a newer session") {
		t.Fatalf("Err() = %v, want ErrStoppedByMaster with the master's reason", err)
	}
	if !processGone(pid) {
		t.Fatal("the build's step outlived the worker")
	}
	if b := c.build(a.BuildID); b.finished {
		t.Fatalf("a build of an ended session was reported finished (%s)", b.result)
	}
	w.Stop() // idempotent after the worker ended by itself
}

// Stop kills the steps, reports the builds as stopped and leaves nothing
// running behind.
func TestStopLeavesNothingRunning(t *testing.T) {
	// Not parallel: it checks every goroutine of the process, once the
	// subtest's fake master is gone too.
	t.Run("stop", func(t *testing.T) {
		c, w, _ := newCluster(t)
		dir := t.TempDir()
		shellPID, childPID := filepath.Join(dir, "shell.pid"), filepath.Join(dir, "child.pid")
		a := newBuild(shell(fmt.Sprintf(`echo $$ > %q; sleep 300 & echo $! > %q; wait`,
			shellPID, childPID)))
		c.assign(a)
		pids := []int{readPID(t, shellPID), readPID(t, childPID)}

		w.Stop()
		w.Stop()
		for _, pid := range pids {
			if !processGone(pid) {
				t.Errorf("process %d outlived Stop", pid)
			}
		}
		checkResult(t, c.build(a.BuildID), build.Exception, "worker stopped")
		if err := w.Err(); err != nil {
			t.Errorf("Err() = %v after a local Stop, want nil", err)
		}
	})
	goleak.VerifyNone(t)
}

// A master repeats a cancel order on every poll until the build ends; the
// worker must not answer that with a storm of polls while a step that
// ignores SIGTERM waits out its grace period.
func TestRepeatedCancelOrdersDoNotSpinThePoll(t *testing.T) {
	t.Parallel()
	c := newFakeCluster(t)
	m := c.addMaster("m1")
	cfg := testConfig(t, m.URL())
	cfg.KillGrace = time.Second
	cfg.BackoffMax = 200 * time.Millisecond
	startWorker(t, cfg)
	pidFile := filepath.Join(t.TempDir(), "pid")
	a := newBuild(shell(fmt.Sprintf(`trap '' TERM; echo $$ > %q; sleep 300`, pidFile)))
	c.assign(a)
	readPID(t, pidFile)

	var before int
	c.update(func() {
		before = c.polls
		c.cancel[a.BuildID] = true
	})
	b := c.waitFinished(a.BuildID, 10*time.Second)
	checkResult(t, b, build.Cancelled, "cancelled")
	c.mu.Lock()
	polls := c.polls - before
	c.mu.Unlock()
	if polls > 40 {
		t.Fatalf("%d polls while a cancelled build took a second to die", polls)
	}
	t.Logf("%d polls while the cancelled build died", polls)
}

// The end of Start's context stops the worker as Stop does.
func TestEndOfStartContextStopsTheWorker(t *testing.T) {
	t.Parallel()
	c := newFakeCluster(t)
	m := c.addMaster("m1")
	w, err := New(testConfig(t, m.URL()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	pidFile := filepath.Join(t.TempDir(), "pid")
	a := newBuild(shell(fmt.Sprintf(`echo $$ > %q; sleep 300`, pidFile)))
	c.assign(a)
	pid := readPID(t, pidFile)

	cancel()
	select {
	case <-w.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the worker did not stop when its context ended")
	}
	if !processGone(pid) {
		t.Error("the step outlived the worker")
	}
	checkResult(t, c.build(a.BuildID), build.Exception, "stopped: worker stopped")
}
