// Package e2e tests Regent end to end: the real binary, real git
// repositories, real worker processes, real HTTP.
package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/regent-ci/regent/internal/testutil/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// gitRun runs git in dir with a fixed identity and no user configuration.
func gitRun(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+dir,
		"GIT_AUTHOR_NAME=Test", "GIT_AUTHOR_EMAIL=test@example.com",
		"GIT_COMMITTER_NAME=Test", "GIT_COMMITTER_EMAIL=test@example.com")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// newRepo makes a git repository on branch main with a Makefile-free tree.
func newRepo(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "repo")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	gitRun(t, dir, "init", "-q", "-b", "main")
	return dir
}

// commit writes a file and commits it, returning the new revision.
func commit(t *testing.T, dir, file, content string) string {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, file), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	gitRun(t, dir, "add", file)
	gitRun(t, dir, "commit", "-q", "-m", "change "+file)
	return gitRun(t, dir, "rev-parse", "HEAD")
}

// freeAddr returns a loopback address with a port free at the time of the
// call.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// getJSON fetches url and decodes its JSON body into v, returning the
// status code.
func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if v != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("GET %s: decode %q: %v", url, body, err)
		}
	}
	return resp.StatusCode
}

// postJSON posts body to url and decodes the answer into v.
func postJSON(t *testing.T, url, body string, v any) int {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if v != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(data, v); err != nil {
			t.Fatalf("POST %s: decode %q: %v", url, data, err)
		}
	}
	return resp.StatusCode
}

// getText fetches url and returns its body.
func getText(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// eventually polls cond until it returns nil or the timeout passes, and
// fails t with cond's last error.
func eventually(t *testing.T, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// apiBuild is a build as the REST API shows it.
type apiBuild struct {
	ID         int64             `json:"id"`
	Builder    string            `json:"builder"`
	Number     int64             `json:"number"`
	State      string            `json:"state"`
	Result     *string           `json:"result"`
	Reason     string            `json:"reason"`
	Properties map[string]string `json:"properties"`
	Worker     *string           `json:"worker"`
	RetryOf    *int64            `json:"retry_of"`
}

type buildList struct {
	Items []apiBuild `json:"items"`
}

type apiStep struct {
	Number  int     `json:"number"`
	Name    string  `json:"name"`
	State   string  `json:"state"`
	Result  *string `json:"result"`
	LogSize int64   `json:"log_size"`
}

type stepList struct {
	Items []apiStep `json:"items"`
}

func result(b apiBuild) string {
	if b.Result == nil {
		return "<none>"
	}
	return *b.Result
}

// builds lists the builds a master shows.
func builds(t *testing.T, base string) []apiBuild {
	t.Helper()
	var l buildList
	if code := getJSON(t, base+"/api/v1/builds", &l); code != http.StatusOK {
		t.Fatalf("GET builds: status %d", code)
	}
	return l.Items
}

// waitFinished waits for a build to finish and returns it.
func waitFinished(t *testing.T, base string, id int64, timeout time.Duration) apiBuild {
	t.Helper()
	var b apiBuild
	eventually(t, timeout, func() error {
		getJSON(t, fmt.Sprintf("%s/api/v1/builds/%d", base, id), &b)
		if b.State != "finished" {
			return fmt.Errorf("build %d is %s", id, b.State)
		}
		return nil
	})
	return b
}
