package e2e

import (
	"fmt"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// slowGitServer serves the repositories under root over HTTP with git
// http-backend; while slow is set, each fetch's pack stalls for stall
// first (or until slow is cleared), and started receives a value when one
// begins.
type slowGitServer struct {
	URL     string
	slow    atomic.Bool
	started chan struct{}
}

func newSlowGitServer(t *testing.T, root string, stall time.Duration) *slowGitServer {
	t.Helper()
	execPath, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		t.Fatal(err)
	}
	backend := &cgi.Handler{
		Path: filepath.Join(strings.TrimSpace(string(execPath)), "git-http-backend"),
		Env:  []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"},
	}
	s := &slowGitServer{started: make(chan struct{}, 16)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/git-upload-pack") && s.slow.Load() {
			select {
			case s.started <- struct{}{}:
			default:
			}
			// Stall until told to stop stalling: the server does not
			// notice a client that went away before it reads the body.
			for end := time.Now().Add(stall); s.slow.Load() && time.Now().Before(end); {
				time.Sleep(20 * time.Millisecond)
			}
		}
		backend.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

// Field case C04 against the real binary: the poller's fetch is slow and
// a new configuration is applied while a poll is in progress. The poll is
// cancelled cleanly (no error shown), polling resumes under the new
// generation, and the next pushed commit becomes a change within a poll
// interval.
func TestReloadDuringASlowPollC04(t *testing.T) {
	t.Parallel()
	repo := newRepo(t)
	commit(t, repo, "a.txt", "0\n")
	srv := newSlowGitServer(t, filepath.Dir(repo), time.Minute)
	star := func(interval string) string {
		return fmt.Sprintf(`
r = git_repo(name = "app", url = %q, branches = ["main"], poll_interval = %q)
w1 = worker(name = "w1", password = secret("w1"))
builder(name = "unit", workers = [w1], steps = [step.shell(command = "true")])
scheduler.branch(name = "on-main", repo = r, branch = "main", builders = ["unit"])
`, srv.URL+"/repo/.git", interval)
	}
	c := startCluster(t, star("1s"), "")
	var r apiRepo
	eventually(t, 20*time.Second, func() error {
		getJSON(t, c.base+"/api/v1/repos/app", &r)
		if r.LastSuccess == nil {
			return fmt.Errorf("not polled yet")
		}
		return nil
	})

	srv.slow.Store(true)
	commit(t, repo, "b.txt", "1\n")
	select {
	case <-srv.started:
	case <-time.After(20 * time.Second):
		t.Fatal("no poll reached the slow fetch")
	}
	if code, out := c.applyConfig(star("2s")); code != 0 {
		t.Fatalf("apply: %d\n%s", code, out)
	}
	// The new generation changes the poller, which is stopped in the
	// middle of its fetch and started again.
	if _, err := c.master.WaitForLine(`msg="service stopped" master=m1 service=poller:app`, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	srv.slow.Store(false)
	next := commit(t, repo, "c.txt", "2\n")
	pushed := time.Now()
	eventually(t, 20*time.Second, func() error {
		var l struct {
			Items []struct {
				Revision string `json:"revision"`
			} `json:"items"`
		}
		getJSON(t, c.base+"/api/v1/changes", &l)
		for _, ch := range l.Items {
			if ch.Revision == next {
				return nil
			}
		}
		return fmt.Errorf("commit %.8s not recorded", next)
	})
	if d := time.Since(pushed); d > 8*time.Second {
		t.Errorf("the commit after the reload took %v to be recorded; the poll interval is 2s", d)
	}
	getJSON(t, c.base+"/api/v1/repos/app", &r)
	if r.Failing {
		t.Fatalf("the cancelled poll shows as a failure: %+v", r)
	}
	if out := c.master.Stderr(); strings.Contains(out, "poll failed") {
		t.Fatalf("a poll failed:\n%s", out)
	}
}

// Field case C14 against the real binary: the only branch is rewritten
// (amended and force-pushed), then a further commit is pushed: each new
// head is built and no poll fails. The branch is then deleted, which is
// no error, and re-created, which is detected and built.
func TestForcePushAndRecreatedBranchC14(t *testing.T) {
	t.Parallel()
	repo := newRepo(t)
	commit(t, repo, "a.txt", "0\n")
	c := startCluster(t, fmt.Sprintf(`
r = git_repo(name = "app", url = %q, branches = ["main"], poll_interval = "1s")
w1 = worker(name = "w1", password = secret("w1"))
builder(name = "ci", workers = [w1], steps = [step.git(repo = r), step.shell(command = "git log -1 --format=%%H")])
scheduler.branch(name = "on-main", repo = r, branch = "main", builders = ["ci"])
`, repo), "")
	c.worker(t.TempDir())
	if _, err := c.master.WaitForLine("first poll recorded branch heads", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	built := func(rev string) {
		t.Helper()
		eventually(t, 30*time.Second, func() error {
			for _, b := range builds(t, c.base) {
				if b.Properties["revision"] == rev && b.State == "finished" {
					if result(b) != "success" {
						return fmt.Errorf("build of %.8s: %s", rev, result(b))
					}
					return nil
				}
			}
			return fmt.Errorf("no finished build of %.8s", rev)
		})
	}
	built(commit(t, repo, "b.txt", "1\n"))
	gitRun(t, repo, "commit", "-q", "--amend", "-m", "amended")
	built(gitRun(t, repo, "rev-parse", "HEAD"))
	built(commit(t, repo, "c.txt", "2\n"))

	gitRun(t, repo, "checkout", "-q", "--detach")
	gitRun(t, repo, "branch", "-q", "-D", "main")
	var r struct {
		LastSuccess *time.Time `json:"last_success"`
		Failing     bool       `json:"failing"`
	}
	deleted := time.Now()
	eventually(t, 20*time.Second, func() error {
		getJSON(t, c.base+"/api/v1/repos/app", &r)
		if r.LastSuccess == nil || !r.LastSuccess.After(deleted.Add(time.Second)) {
			return fmt.Errorf("no successful poll since the branch was deleted")
		}
		return nil
	})
	gitRun(t, repo, "checkout", "-q", "-b", "main")
	built(commit(t, repo, "d.txt", "3\n"))
	getJSON(t, c.base+"/api/v1/repos/app", &r)
	if r.Failing || strings.Contains(c.master.Stderr(), "poll failed") {
		t.Fatalf("a poll failed:\n%s", c.master.Stderr())
	}
}
