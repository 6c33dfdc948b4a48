package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/regent-ci/regent/internal/changes"
	"github.com/regent-ci/regent/internal/testutil/pgtest"
)

const hookSecret = "e2e-hook-secret"

// hookPush is a GitHub push of one commit to main of acme/app, as GitHub
// documents its payload.
const hookPush = `{
  "ref": "refs/heads/main",
  "before": "1111111111111111111111111111111111111111",
  "after": "2222222222222222222222222222222222222222",
  "created": false, "deleted": false, "forced": false,
  "commits": [{
    "id": "2222222222222222222222222222222222222222",
    "message": "Fix the parser",
    "timestamp": "2024-05-06T09:10:11+02:00",
    "author": {"name": "Ada Lovelace", "email": "ada@example.test", "username": "ada"},
    "added": [], "removed": [], "modified": ["parse.go"]
  }],
  "head_commit": null,
  "repository": {
    "full_name": "acme/app",
    "html_url": "https://git.example.test/acme/app",
    "clone_url": "https://git.example.test/acme/app.git",
    "ssh_url": "git@git.example.test:acme/app.git"
  },
  "pusher": {"name": "ada", "email": "ada@example.test"}
}`

// deliver posts a GitHub push delivery to a master and returns the status.
func deliver(t *testing.T, base, delivery, secret string) int {
	t.Helper()
	req, err := http.NewRequest("POST", base+"/api/v1/hooks/github", bytes.NewReader([]byte(hookPush)))
	if err != nil {
		t.Error(err)
		return 0
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", delivery)
	req.Header.Set("X-Hub-Signature-256", "sha256="+changes.Sign([]byte(hookPush), secret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// Field case C15: the same push webhook delivered twice, concurrently, to
// two masters on one PostgreSQL database, then again later (and once more
// under another delivery id, as a forge's manual redelivery may be): one
// change, one buildset. A wrong signature is refused and records nothing.
func TestDuplicateWebhooksAcrossMastersC15(t *testing.T) {
	t.Parallel()
	c := &pgCluster{t: t, db: pgtest.URL(t), secrets: t.TempDir(), masters: map[string]*pgMaster{}}
	writeFile(t, filepath.Join(c.secrets, "w1"), "secret-one\n")
	writeFile(t, filepath.Join(c.secrets, "hook"), hookSecret+"\n")
	c.apply(`
r = git_repo(name = "app", url = "ssh://git@git.example.test/acme/app.git", branches = ["main"],
             poll_interval = None, webhook_secret = secret("hook"))
w1 = worker(name = "w1", password = secret("w1"))
builder(name = "unit", workers = [w1], steps = [step.shell(command = "true")])
scheduler.branch(name = "on-main", repo = r, branch = "main", builders = ["unit"])
`)
	m1, m2 := c.start("m1", false), c.start("m2", false)

	if code := deliver(t, m1.base(), "forged", "not-the-secret"); code != http.StatusUnauthorized {
		t.Fatalf("forged delivery: status %d, want 401", code)
	}
	const rounds = 5
	var wg sync.WaitGroup
	codes := make(chan int, 2*rounds)
	for i := range rounds {
		for _, m := range []*pgMaster{m1, m2} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				codes <- deliver(t, m.base(), fmt.Sprintf("delivery-%d", i%2), hookSecret)
			}()
		}
	}
	wg.Wait()
	close(codes)
	for code := range codes {
		if code != http.StatusOK {
			t.Fatalf("a concurrent delivery answered %d", code)
		}
	}

	rev := "2222222222222222222222222222222222222222"
	c.waitRecorded(rev, 10*time.Second)
	buildsets := func(m *pgMaster) int {
		var l struct {
			Items []struct {
				Scheduler string `json:"scheduler"`
			} `json:"items"`
		}
		getJSON(t, m.base()+"/api/v1/buildsets", &l)
		n := 0
		for _, bs := range l.Items {
			if bs.Scheduler == "on-main" {
				n++
			}
		}
		return n
	}
	eventually(t, 10*time.Second, func() error {
		if n := buildsets(m2); n != 1 {
			return fmt.Errorf("%d buildsets", n)
		}
		return nil
	})

	// Later: the same delivery again, and the same push under a new id.
	for _, id := range []string{"delivery-0", "redelivered"} {
		if code := deliver(t, m2.base(), id, hookSecret); code != http.StatusOK {
			t.Fatalf("late delivery %s: status %d", id, code)
		}
	}
	time.Sleep(2 * time.Second) // the schedulers run every second: a duplicate would show
	for _, m := range []*pgMaster{m1, m2} {
		if n := c.changesOf(m, rev); n != 1 {
			t.Errorf("%s shows the change %d times", m.name, n)
		}
		if n := buildsets(m); n != 1 {
			t.Errorf("%s shows %d buildsets", m.name, n)
		}
	}
}
