package procs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/regent-ci/regent/internal/testutil"
)

// envBinary names the environment variable that may hold the path of a
// regent binary already built, to use instead of building one.
const envBinary = "REGENT_TEST_BINARY"

// Builds made by this test process, by package, each made once.
var builds struct {
	mu       sync.Mutex
	dir      string
	byPkg    map[string]*build
	root     string
	rootErr  error
	rootOnce sync.Once
}

type build struct {
	once sync.Once
	path string
	err  error
}

// Regent returns the path of a regent binary built from the module's
// current source, building it on first use in this test process, or the
// binary named by REGENT_TEST_BINARY.
func Regent(t testing.TB) string {
	t.Helper()
	if path := os.Getenv(envBinary); path != "" {
		return path
	}
	return Build(t, "./cmd/regent")
}

// Build compiles the main package pkg, a path relative to the module root
// such as "./cmd/regent", once per test process, and returns the binary's
// path. A failed build fails t, and every later test that asks for it.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	builds.mu.Lock()
	if builds.byPkg == nil {
		builds.byPkg = make(map[string]*build)
	}
	b := builds.byPkg[pkg]
	if b == nil {
		b = &build{}
		builds.byPkg[pkg] = b
	}
	builds.mu.Unlock()

	b.once.Do(func() { b.path, b.err = buildPackage(pkg) })
	if b.err != nil {
		t.Fatalf("procs: %v", b.err)
	}
	return b.path
}

// buildPackage runs go build for pkg into this process's binary directory.
func buildPackage(pkg string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	dir, err := binDir()
	if err != nil {
		return "", err
	}
	// The binary keeps the package's base name, which it may print in its
	// usage; a directory per package keeps apart packages of the same name.
	sub := strings.NewReplacer("/", "_", ".", "_").Replace(pkg)
	out := filepath.Join(dir, sub, filepath.Base(pkg))

	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", fmt.Errorf("build %s: %w", pkg, err)
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("build %s: no go command on PATH: %w", pkg, err)
	}
	cmd := exec.Command(goTool, "build", "-o", out, pkg)
	cmd.Dir = root
	var output bytes.Buffer
	cmd.Stdout = &output
	cmd.Stderr = &output
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, output.String())
	}
	return out, nil
}

// binDir returns the directory holding this process's builds, making it on
// first use; it is removed by [testutil.Main].
func binDir() (string, error) {
	builds.mu.Lock()
	defer builds.mu.Unlock()
	if builds.dir != "" {
		return builds.dir, nil
	}
	dir, err := testutil.TempDir("bin")
	if err != nil {
		return "", err
	}
	builds.dir = dir
	testutil.AtExit(func() { _ = os.RemoveAll(dir) })
	return dir, nil
}

// ModuleRoot returns the directory holding the go.mod of the module the
// tests run in, as go env GOMOD tells.
func ModuleRoot() (string, error) {
	builds.rootOnce.Do(func() {
		out, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			builds.rootErr = fmt.Errorf("find the module root: go env GOMOD: %w", err)
			return
		}
		gomod := strings.TrimSpace(string(out))
		if gomod == "" || gomod == os.DevNull {
			builds.rootErr = errors.New("find the module root: not inside a module")
			return
		}
		builds.root = filepath.Dir(gomod)
	})
	return builds.root, builds.rootErr
}

// Main runs the tests of m, then removes the binaries built for them and
// runs the other helpers' exit hooks; it is [testutil.Main].
func Main(m *testing.M) int { return testutil.Main(m) }
