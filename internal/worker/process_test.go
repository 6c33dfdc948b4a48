package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/regent-ci/regent/internal/build"
	"github.com/regent-ci/regent/internal/config"
	"go.uber.org/goleak"
)

// leaveBehind returns shell code that starts two processes meant to
// outlive the shell: a background child, and a daemon that left the
// step's session and process group and whose parent exited at once
// (setsid, then a double fork). The code returns once both have written
// their pids to the files it returns; the test's cleanup kills them if
// they are still there.
func leaveBehind(t *testing.T) (code string, pidFiles []string) {
	dir := t.TempDir()
	child, daemon := filepath.Join(dir, "child.pid"), filepath.Join(dir, "daemon.pid")
	code = fmt.Sprintf(`sleep 300 & echo $! > %q; `+
		`setsid sh -c 'sleep 300 </dev/null >/dev/null 2>&1 & echo $! > %q' & `+
		`until [ -s %q ]; do sleep 0.01; done; `, child, daemon, daemon)
	t.Cleanup(func() { killLeftovers(pidFiles) })
	return code, []string{child, daemon}
}

// killLeftovers kills what leaveBehind started if it is still running, so
// that a failing test leaves nothing behind.
func killLeftovers(pidFiles []string) {
	for _, f := range pidFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err == nil && bytes.HasPrefix(cmdline, []byte("sleep\x00300")) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// waitAllGone waits until every process in pids has exited.
func waitAllGone(t *testing.T, pids []int) {
	t.Helper()
	for _, pid := range pids {
		waitUntil(t, 10*time.Second, fmt.Sprintf("process %d to be killed", pid),
			func() bool { return processGone(pid) })
	}
}

// The step's timeout ends every process of the step, a background child
// and a daemon that left the process group included, whether or not the
// processes heed SIGTERM.
func TestTimeoutKillsEveryProcessOfTheStep(t *testing.T) {
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
			shellPID := filepath.Join(t.TempDir(), "shell.pid")
			leave, pidFiles := leaveBehind(t)
			step := shell(fmt.Sprintf(`%secho $$ > %q; %s wait; wait`, tc.prelude, shellPID, leave))
			step.Timeout = config.Duration(time.Second)
			a := newBuild(step, shell("echo never"))
			c.assign(a)

			pids := []int{readPID(t, shellPID)}
			for _, f := range pidFiles {
				pids = append(pids, readPID(t, f))
			}
			b := c.waitFinished(a.BuildID, 20*time.Second)
			checkResult(t, b, build.Failure, "timed out after 1s")
			waitAllGone(t, pids)
			// A timeout is a failure like any other: without
			// halt_on_failure the next step runs.
			if b.steps[1].result != build.Failure || b.steps[2] == nil ||
				b.steps[2].result != build.Success {
				t.Fatalf("want a failed step then a successful one, got %d steps", len(b.steps))
			}
		})
	}
}

// Processes a step leaves behind, in its process group or out of it, are
// killed when it ends, and the step's result is its command's.
func TestLeftoverProcessesAreKilled(t *testing.T) {
	t.Parallel()
	c, _, _ := newCluster(t)
	leave1, pidFiles1 := leaveBehind(t)
	leave2, pidFiles2 := leaveBehind(t)
	a := newBuild(shell(leave1+"echo done"), shell(leave2+"exit 4"))
	c.assign(a)
	b := c.waitFinished(a.BuildID, 20*time.Second)
	checkResult(t, b, build.Failure, "exit status 4")
	if b.steps[1].result != build.Success {
		t.Errorf("a step that exited 0 leaving processes behind ended %q", b.steps[1].result)
	}
	checkLog(t, b, 1, []byte("done\n"))
	var pids []int
	for _, f := range append(pidFiles1, pidFiles2...) {
		pids = append(pids, readPID(t, f))
	}
	waitAllGone(t, pids)
}

// A cancellation kills every process of the running step, a daemon that
// left its process group included.
func TestCancelKillsEveryProcessOfTheStep(t *testing.T) {
	t.Parallel()
	c, _, _ := newCluster(t)
	leave, pidFiles := leaveBehind(t)
	started := filepath.Join(t.TempDir(), "started")
	a := newBuild(shell(fmt.Sprintf(`%s echo $$ > %q; wait`, leave, started)))
	c.assign(a)
	readPID(t, started)
	var pids []int
	for _, f := range pidFiles {
		pids = append(pids, readPID(t, f))
	}

	c.update(func() { c.cancel[a.BuildID] = true })
	b := c.waitFinished(a.BuildID, 20*time.Second)
	checkResult(t, b, build.Cancelled, "cancelled")
	waitAllGone(t, pids)
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
