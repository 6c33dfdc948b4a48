package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/regent-ci/regent/internal/testutil/procs"
)

// reapBound is a generous multiple of how long a step's processes take
// to die once the step ends or its worker dies: the keeper needs a few
// milliseconds, or the grace period (10 s) for processes that ignore
// SIGTERM, which these do not.
const reapBound = 30 * time.Second

// A step's processes never outlive the step: not a background child, not
// a daemon that left the step's session and whose parent exited (setsid,
// double fork); whether the step's command exits by itself, is cancelled,
// times out, or its worker is killed with SIGKILL.
func TestStepProcessesDoNotOutliveTheStep(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// tail ends the step's command after it has started its processes.
		tail    string
		timeout string
		// end ends the step from outside, if the step does not end by itself.
		end        func(t *testing.T, f *farm, worker *procs.Proc, build int64)
		wantResult string
		wantReason string
	}{
		{name: "exits", tail: "exit 0", wantResult: "success"},
		{name: "cancelled", tail: "wait", end: cancelBuild, wantResult: "cancelled",
			wantReason: "no longer needed"},
		{name: "times out", tail: "wait", timeout: "3s", wantResult: "failure",
			wantReason: "timed out after 3s"},
		{name: "worker killed", tail: "wait", end: killWorker},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			pids := []string{filepath.Join(dir, "shell.pid"), filepath.Join(dir, "child.pid"),
				filepath.Join(dir, "daemon.pid")}
			command := fmt.Sprintf(`echo $$ > %s; sleep 987 & echo $! > %s; `+
				`setsid sh -c 'sleep 987 </dev/null >/dev/null 2>&1 & echo $! > %s' & `+
				`until [ -s %s ]; do sleep 0.01; done; echo running; %s`,
				pids[0], pids[1], pids[2], pids[2], tc.tail)
			f := newFarm(t, reapingStar(command, tc.timeout), farmOptions{workers: []string{"w1"}})
			w := f.worker("w1", t.TempDir())
			id := f.buildOf(f.forceOn(0, "b"), 30*time.Second)
			f.waitLog(id, 1, "running", 30*time.Second)
			var started []int
			for _, p := range pids {
				pid := readPIDFile(t, p)
				started = append(started, pid)
				t.Cleanup(func() { killSleep(pid) })
			}

			if tc.end != nil {
				tc.end(t, f, w, id)
			}
			if tc.wantResult != "" {
				b := f.waitFinished(id, 60*time.Second)
				if result(b) != tc.wantResult || !strings.Contains(b.Reason, tc.wantReason) {
					t.Fatalf("build %d: %s (%q), want %s with a reason containing %q",
						id, result(b), b.Reason, tc.wantResult, tc.wantReason)
				}
			}
			eventually(t, reapBound, func() error {
				for i, pid := range started {
					if alive(pid) {
						return fmt.Errorf("process %d (%s) is still running",
							pid, filepath.Base(pids[i]))
					}
				}
				return nil
			})
		})
	}
}

// cancelBuild cancels the build through the API.
func cancelBuild(t *testing.T, f *farm, _ *procs.Proc, build int64) {
	code := postJSON(t, fmt.Sprintf("%s/api/v1/builds/%d/cancel", f.url(0), build),
		`{"reason": "no longer needed"}`, nil)
	if code/100 != 2 {
		t.Fatalf("cancel build %d: status %d", build, code)
	}
}

// killWorker kills the worker process with SIGKILL.
func killWorker(t *testing.T, _ *farm, w *procs.Proc, _ int64) {
	if err := w.Kill(); err != nil {
		t.Fatal(err)
	}
}

// reapingStar is a configuration with builder b running command as its
// one step, with the given timeout (the default when empty).
func reapingStar(command, timeout string) string {
	limit := ""
	if timeout != "" {
		limit = fmt.Sprintf(", timeout = %q", timeout)
	}
	return fmt.Sprintf(`
worker(name = "w1", password = secret("w1"))
builder(name = "b", workers = ["w1"], steps = [step.shell(name = "s1", command = %q%s)])
scheduler.force(name = "force", builders = ["b"])
`, command, limit)
}

// readPIDFile waits for a step to write a pid to path.
func readPIDFile(t *testing.T, path string) int {
	t.Helper()
	var pid int
	eventually(t, 30*time.Second, func() error {
		b, err := os.ReadFile(path)
		if err != nil || !bytes.HasSuffix(b, []byte("\n")) {
			return fmt.Errorf("no pid in %s yet", path)
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err
	})
	return pid
}

// killSleep kills pid if it is one of the test's "sleep 987" processes
// and still runs, so that a failing test leaves nothing behind.
func killSleep(pid int) {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err == nil && bytes.HasPrefix(cmdline, []byte("sleep\x00987")) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}
