package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/regent-ci/regent/internal/config"
	"github.com/regent-ci/regent/internal/workerapi"
	"go.uber.org/goleak"
)

// TestMain fails the run when any goroutine outlives the tests: every
// worker a test starts must be stopped completely. The test binary is
// also the program the workers run again as their steps' keepers.
func TestMain(m *testing.M) {
	RunKeeperIfRequested()
	goleak.VerifyTestMain(m)
}

// testWriter sends a worker's log lines to the test's log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// recordingHandler keeps the messages logged, for tests that check what
// the worker says.
type recordingHandler struct {
	slog.Handler
	mu   *sync.Mutex
	msgs *[]string
}

func (h recordingHandler) Handle(ctx context.Context, r slog.Record) error {
	h.mu.Lock()
	*h.msgs = append(*h.msgs, r.Level.String()+" "+r.Message)
	h.mu.Unlock()
	return h.Handler.Handle(ctx, r)
}

func (h recordingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return recordingHandler{h.Handler.WithAttrs(as), h.mu, h.msgs}
}

func (h recordingHandler) WithGroup(name string) slog.Handler {
	return recordingHandler{h.Handler.WithGroup(name), h.mu, h.msgs}
}

// testConfig is a worker configuration with short delays for tests.
func testConfig(t *testing.T, masters ...string) Config {
	return Config{
		Masters:    masters,
		Name:       "w1",
		Password:   "secret",
		Basedir:    t.TempDir(),
		BackoffMin: 5 * time.Millisecond,
		BackoffMax: 50 * time.Millisecond,
		KillGrace:  300 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(testWriter{t},
			&slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

// startWorker starts a worker that is stopped when the test ends.
func startWorker(t *testing.T, cfg Config) *Worker {
	t.Helper()
	w, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := w.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(w.Stop)
	return w
}

// newCluster starts a fake cluster with one master and a worker on it.
func newCluster(t *testing.T) (*fakeCluster, *Worker, Config) {
	c := newFakeCluster(t)
	m := c.addMaster("m1")
	cfg := testConfig(t, m.URL())
	return c, startWorker(t, cfg), cfg
}

var buildIDs atomic.Int64

// newBuild is an assignment of the given steps on builder "b".
func newBuild(steps ...config.Step) workerapi.Assignment {
	id := buildIDs.Add(1)
	return workerapi.Assignment{
		BuildID:      id,
		Builder:      "b",
		Number:       id,
		AttemptToken: fmt.Sprintf("attempt-%d", id),
		Steps:        steps,
	}
}

// shell is a shell step running command.
func shell(command string) config.Step {
	return config.Step{Kind: config.StepShell, Command: command}
}

// stepLog returns step n's log bytes.
func (b fakeBuild) stepLog(n int) []byte {
	if s := b.steps[n]; s != nil {
		return s.log
	}
	return nil
}

// checkResult fails the test unless the build ended with result and
// a reason containing reason.
func checkResult(t *testing.T, b fakeBuild, result, reason string) {
	t.Helper()
	if b.result != result || !strings.Contains(b.reason, reason) {
		t.Fatalf("build %d ended %q (%q), want %q with a reason containing %q",
			b.a.BuildID, b.result, b.reason, result, reason)
	}
}

// checkLog fails the test unless step n's stored log is exactly want and
// its finish reported that size.
func checkLog(t *testing.T, b fakeBuild, n int, want []byte) {
	t.Helper()
	s := b.steps[n]
	if s == nil {
		t.Fatalf("build %d: step %d never started", b.a.BuildID, n)
	}
	if !bytes.Equal(s.log, want) {
		t.Fatalf("build %d step %d: log differs from the output: got %d bytes, want %d; "+
			"first difference at %d\ngot  %q\nwant %q", b.a.BuildID, n, len(s.log), len(want),
			firstDiff(s.log, want), clip(s.log), clip(want))
	}
	if s.logSize != int64(len(want)) {
		t.Fatalf("build %d step %d: finish reported log size %d, want %d",
			b.a.BuildID, n, s.logSize, len(want))
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func clip(b []byte) []byte {
	if len(b) > 200 {
		return b[:200]
	}
	return b
}

// waitUntil polls cond until it holds, failing the test after timeout.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// readPID reads a process id a step wrote to a file.
func readPID(t *testing.T, path string) int {
	t.Helper()
	var pid int
	waitUntil(t, 10*time.Second, "the step to write "+path, func() bool {
		b, err := os.ReadFile(path)
		if err != nil || !bytes.HasSuffix(b, []byte("\n")) {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	})
	return pid
}

// processGone reports whether pid has exited (a zombie counts as gone:
// the test process is not its parent and cannot reap it).
func processGone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return os.IsNotExist(err)
	}
	// The state follows the parenthesised command name.
	if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) {
		return stat[i+2] == 'Z' || stat[i+2] == 'X'
	}
	return false
}

// deadURL is a loopback address where nothing listens.
func deadURL(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}
