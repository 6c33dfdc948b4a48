package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/regent-ci/regent/internal/testutil/procs"
)

// cluster is one master with a configuration directory, and its workers.
type cluster struct {
	t       *testing.T
	base    string
	db      string
	cfgDir  string
	secrets string
	master  *procs.Proc
}

const slowConfig = `
w1 = worker(name = "w1", password = secret("w1"), max_builds = 1)
builder(name = "slow", workers = [w1], steps = [
    step.shell(command = "echo started; for i in 1 2 3 4 5 6 7 8 9 10; do echo line$i; sleep 1; done; echo done", name = "slow"),
])
builder(name = "quick", workers = [w1], steps = [step.shell(command = "echo hello-from-quick")])
scheduler.force(name = "force", builders = ["slow", "quick"])
`

// startCluster writes the configuration and starts a master on SQLite or,
// given a URL, on PostgreSQL.
func startCluster(t *testing.T, star, db string) *cluster {
	t.Helper()
	c := &cluster{t: t, cfgDir: t.TempDir(), secrets: t.TempDir(), db: db}
	if c.db == "" {
		c.db = filepath.Join(t.TempDir(), "regent.db")
	}
	writeFile(t, filepath.Join(c.cfgDir, "regent.star"), star)
	writeFile(t, filepath.Join(c.secrets, "w1"), "secret-one\n")
	addr := freeAddr(t)
	c.base = "http://" + addr
	c.master = procs.Start(t, procs.Spec{Name: "master", Path: procs.Regent(t), Args: []string{
		"master", "--db", c.db, "--config", c.cfgDir, "--secrets-dir", c.secrets,
		"--listen", addr, "--data-dir", t.TempDir(), "--name", "m1"}})
	if _, err := c.master.WaitForLine("master started", 30*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, c.master.Stderr())
	}
	return c
}

// worker starts a worker process named w1 against the master.
func (c *cluster) worker(basedir string) *procs.Proc {
	c.t.Helper()
	w := procs.Start(c.t, procs.Spec{Name: "worker", Path: procs.Regent(c.t), Args: []string{
		"worker", "--master", c.base, "--name", "w1",
		"--password-file", filepath.Join(c.secrets, "w1"), "--basedir", basedir}})
	return w
}

// buildset is a buildset as the REST API shows it.
type buildset struct {
	ID       int64 `json:"id"`
	Requests []struct {
		ID     int64  `json:"id"`
		State  string `json:"state"`
		Reason string `json:"reason"`
		Build  *int64 `json:"build"`
	} `json:"requests"`
}

// forceOnly forces a build of builder and returns the buildset.
func (c *cluster) forceOnly(builder string) buildset {
	c.t.Helper()
	var bs buildset
	code := postJSON(c.t, c.base+"/api/v1/builders/"+builder+"/force", `{"reason": "test"}`, &bs)
	if code != http.StatusOK && code != http.StatusCreated {
		c.t.Fatalf("force %s: status %d", builder, code)
	}
	return bs
}

// force forces a build of builder and returns the id of its build once a
// worker has claimed it.
func (c *cluster) force(builder string) int64 {
	c.t.Helper()
	bs := c.forceOnly(builder)
	var id int64
	eventually(c.t, 30*time.Second, func() error {
		var cur buildset
		getJSON(c.t, fmt.Sprintf("%s/api/v1/buildsets/%d", c.base, bs.ID), &cur)
		if len(cur.Requests) == 0 || cur.Requests[0].Build == nil {
			return fmt.Errorf("buildset %d: request not claimed: %+v", bs.ID, cur.Requests)
		}
		id = *cur.Requests[0].Build
		return nil
	})
	return id
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// stepLog returns a step's raw log.
func (c *cluster) stepLog(build int64, step int) string {
	return getText(c.t, fmt.Sprintf("%s/api/v1/builds/%d/steps/%d/log", c.base, build, step))
}

// Must-show 4: a worker killed mid-step and restarted under the same name:
// the master keeps serving, the interrupted build ends exception with a
// reason, and a new forced build runs on the restarted worker.
func TestWorkerKilledAndRestarted(t *testing.T) {
	t.Parallel()
	c := startCluster(t, slowConfig, "")
	basedir := t.TempDir()
	w := c.worker(basedir)
	id := c.force("slow")
	eventually(t, 30*time.Second, func() error {
		if log := c.stepLog(id, 1); !strings.Contains(log, "line1") {
			return fmt.Errorf("log so far %q", log)
		}
		return nil
	})
	if err := w.Kill(); err != nil {
		t.Fatal(err)
	}
	c.worker(basedir)
	b := waitFinished(t, c.base, id, 30*time.Second)
	if result(b) != "exception" || b.Reason == "" {
		t.Fatalf("interrupted build: result %s reason %q, want exception with a reason", result(b), b.Reason)
	}
	next := c.force("quick")
	nb := waitFinished(t, c.base, next, 60*time.Second)
	if result(nb) != "success" || !strings.Contains(c.stepLog(next, 1), "hello-from-quick") {
		t.Fatalf("build on the restarted worker: %s, log %q", result(nb), c.stepLog(next, 1))
	}
	var workers struct {
		Items []struct {
			Name string `json:"name"`
		} `json:"items"`
	}
	getJSON(t, c.base+"/api/v1/workers", &workers)
	if len(workers.Items) != 1 {
		t.Fatalf("workers = %+v, want w1 once", workers.Items)
	}
}

// Must-show 5: the live update stream the build page uses delivers log
// lines while the step is still running.
func TestLiveLogStream(t *testing.T) {
	t.Parallel()
	c := startCluster(t, slowConfig, "")
	c.worker(t.TempDir())
	id := c.force("slow")

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/api/v1/builds/%d/events", c.base, id), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("content type %q", ct)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "data:") && strings.Contains(sc.Text(), "line2") {
			break
		}
	}
	if sc.Err() != nil {
		t.Fatalf("stream ended before line2: %v", sc.Err())
	}
	var b apiBuild
	getJSON(t, fmt.Sprintf("%s/api/v1/builds/%d", c.base, id), &b)
	if b.State != "running" {
		t.Fatalf("line2 arrived only after the build was %s", b.State)
	}
}
