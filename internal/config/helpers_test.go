package config

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testSecrets are the secrets every test configuration may use.
var testSecrets = MapSecrets{"worker-pw": "from-secret", "token": "tok-value"}

// writeFiles writes files (path -> content) under a new directory and
// returns it.
func writeFiles(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// loadFiles evaluates a configuration made of files.
func loadFiles(t *testing.T, files map[string]string) (*State, error) {
	t.Helper()
	return Load(context.Background(), writeFiles(t, files), Options{Secrets: testSecrets})
}

// mustLoad evaluates regent.star holding src and fails the test on error.
func mustLoad(t *testing.T, src string) *State {
	t.Helper()
	st, err := loadFiles(t, map[string]string{"regent.star": src})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return st
}

// errorLines evaluates a configuration that must be refused and returns
// its problems, one line each.
func errorLines(t *testing.T, files map[string]string) []string {
	t.Helper()
	_, err := loadFiles(t, files)
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("Load: got %v, want Errors", err)
	}
	return strings.Split(errs.Error(), "\n")
}

// prelude declares objects that test configurations refer to.
const prelude = `app = git_repo("app", "https://example.com/app.git")
w1 = worker("w1", "pw")
`
