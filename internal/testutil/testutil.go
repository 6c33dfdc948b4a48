// Package testutil holds what Regent's test helpers share: scratch
// directories that outlive a crashed test process only until the next one
// sweeps them, and exit hooks that [Main] runs once every test has finished.
//
// The helpers themselves live beneath it: [pgtest] gives a test a fresh
// PostgreSQL database, [proxy] puts a faulty network between two processes,
// and [procs] starts and controls real processes.
//
// [pgtest]: github.com/regent-ci/regent/internal/testutil/pgtest
// [proxy]: github.com/regent-ci/regent/internal/testutil/proxy
// [procs]: github.com/regent-ci/regent/internal/testutil/procs
package testutil

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// tempPrefix starts the name of every directory made by [TempDir]; the
// process id that follows it lets a later process tell whether the owner
// is still alive.
const tempPrefix = "regent-test-"

var (
	exitMu    sync.Mutex
	exitHooks []func()

	sweepOnce sync.Once
)

// Main runs the tests of m, then every hook registered with [AtExit], most
// recent first, and returns the exit code for os.Exit. A package whose
// tests use the helpers beneath testutil calls it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(testutil.Main(m)) }
//
// Without it, servers and processes the helpers started still die with the
// test process, but their scratch directories stay until a later test
// process sweeps them.
func Main(m *testing.M) int {
	code := m.Run()
	RunExitHooks()
	return code
}

// AtExit registers fn to run when [Main] returns from the tests, for
// resources shared by all the tests of a process.
func AtExit(fn func()) {
	exitMu.Lock()
	defer exitMu.Unlock()
	exitHooks = append(exitHooks, fn)
}

// RunExitHooks runs the hooks registered with [AtExit], most recent first,
// and forgets them. [Main] calls it; a TestMain that cannot use Main calls it
// after m.Run.
func RunExitHooks() {
	exitMu.Lock()
	hooks := exitHooks
	exitHooks = nil
	exitMu.Unlock()

	for i := len(hooks) - 1; i >= 0; i-- {
		hooks[i]()
	}
}

// TempDir makes a new directory for the current process, readable and
// enterable by every user (PostgreSQL runs as another user when the tests
// run as root), and returns its path. Unlike testing.T.TempDir it outlives
// any single test; the caller removes it. Directories left behind by test
// processes that have since died are removed the first time TempDir runs in
// a process.
func TempDir(purpose string) (string, error) {
	base := os.TempDir()
	sweepOnce.Do(func() { sweepStale(base) })

	dir, err := os.MkdirTemp(base, fmt.Sprintf("%s%d-%s-", tempPrefix, os.Getpid(), purpose))
	if err != nil {
		return "", fmt.Errorf("make scratch directory: %w", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", fmt.Errorf("make scratch directory: %w", err)
	}
	return dir, nil
}

// sweepStale removes the scratch directories of test processes that no
// longer exist. A reused process id only delays the removal.
func sweepStale(base string) {
	matches, _ := filepath.Glob(filepath.Join(base, tempPrefix+"*"))
	for _, path := range matches {
		pid, ok := ownerPID(filepath.Base(path))
		if !ok || pid == os.Getpid() || processExists(pid) {
			continue
		}
		_ = os.RemoveAll(path)
	}
}

// ownerPID reads the process id out of a scratch directory's name.
func ownerPID(name string) (int, bool) {
	rest := strings.TrimPrefix(name, tempPrefix)
	digits, _, found := strings.Cut(rest, "-")
	if !found {
		return 0, false
	}
	pid, err := strconv.Atoi(digits)
	return pid, err == nil && pid > 0
}

// processExists reports whether a process with this id exists, whoever
// owns it.
func processExists(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
