package changes

import (
	"bytes"
	"context"
	"crypto/subtle"
	"log/slog"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/regent-ci/regent/internal/config"
	"github.com/regent-ci/regent/internal/store"
)

// Tags matching the repository's patterns make changes under their full
// ref, with category tag: not at the first poll that watches them, then
// when one is created or moved; other tags make none.
func TestTagsMakeChanges(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *PollerConfig) { c.Repo.Tags = []string{"v*"} })
	h.remote.git("tag", "v0.9")
	h.remote.push("refs/tags/*:refs/tags/*")
	h.poll()
	if got := h.stored(); len(got) != 0 {
		t.Fatalf("the first poll made changes %v", refsOf(got))
	}
	rev := h.remote.commit("release", map[string]string{"a": "1"})
	h.remote.git("tag", "-a", "-m", "release 1.0", "v1.0")
	h.remote.git("tag", "nightly")
	h.remote.push("main", "refs/tags/*:refs/tags/*")
	h.poll()
	var tags []store.Change
	for _, c := range h.stored() {
		if c.Category == store.CategoryTag {
			tags = append(tags, c)
		}
	}
	if len(tags) != 1 || tags[0].Branch != "refs/tags/v1.0" || tags[0].Revision != rev {
		t.Fatalf("tag changes = %v, want refs/tags/v1.0 at the commit it tags", refsOf(tags))
	}
	if heads := h.heads(); heads["refs/tags/v1.0"] != rev || heads["refs/tags/nightly"] != "" {
		t.Fatalf("heads = %v", heads)
	}
	// A tag moved to another commit is a change again.
	next := h.remote.commit("fix", map[string]string{"a": "2"})
	h.remote.git("tag", "-f", "v0.9")
	h.remote.push("main", "+refs/tags/*:refs/tags/*")
	h.poll()
	got := h.stored()
	if last := got[len(got)-1]; last.Branch != "refs/tags/v0.9" || last.Revision != next {
		t.Fatalf("after moving v0.9: %v", refsOf(got))
	}
}

// The poll of a repository behind HTTP basic authentication works with
// the credentials from the secret, fails without them, and never shows
// the secret in an error or a log line.
func TestCredentialsFromSecrets(t *testing.T) {
	t.Parallel()
	backend, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		t.Fatal(err)
	}
	remote := newTestRemote(t)
	const password = "pa55-w0rd-secret"
	var mu sync.Mutex
	var seen []string
	cgiHandler := &cgi.Handler{
		Path: filepath.Join(strings.TrimSpace(string(backend)), "git-http-backend"),
		Env:  []string{"GIT_PROJECT_ROOT=" + filepath.Dir(remote.bare), "GIT_HTTP_EXPORT_ALL=1"},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pw, ok := r.BasicAuth()
		mu.Lock()
		seen = append(seen, user)
		mu.Unlock()
		if !ok || subtle.ConstantTimeCompare([]byte(pw), []byte(password)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		cgiHandler.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)

	var logs bytes.Buffer
	var logMu sync.Mutex
	logger := slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &logMu}, nil))
	h := &harness{t: t, remote: remote, store: openStore(t, "")}
	mk := func(secrets config.SecretProvider) *Poller {
		return h.newPoller(h.store, func(c *PollerConfig) {
			c.Repo.URL = srv.URL + "/remote.git"
			c.Repo.Credentials = "git-token"
			c.Secrets = secrets
			c.Logger = logger
		})
	}
	h.poller = mk(config.MapSecrets{"git-token": "wrong-" + password})
	err = h.poller.PollNow(context.Background())
	if err == nil || strings.Contains(err.Error(), password) {
		t.Fatalf("poll with wrong credentials: %v", err)
	}
	h.poller = mk(config.MapSecrets{"git-token": "ci-bot:" + password})
	h.poll()
	if heads := h.heads(); heads["refs/heads/main"] == "" {
		t.Fatalf("heads after an authenticated poll = %v", heads)
	}
	p := mk(config.MapSecrets{})
	if err := p.PollNow(context.Background()); err == nil || !strings.Contains(err.Error(), "git-token") {
		t.Fatalf("poll with a missing secret: %v", err)
	}
	mu.Lock()
	users := append([]string(nil), seen...)
	mu.Unlock()
	if !slicesContain(users, "ci-bot") {
		t.Fatalf("the server saw users %v, want ci-bot", users)
	}
	logMu.Lock()
	logged := logs.String()
	logMu.Unlock()
	if strings.Contains(logged, password) {
		t.Fatalf("the log shows the secret:\n%s", logged)
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func slicesContain(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// The loop records its health after each poll, with the next poll's time,
// and a failing poller shows since when it fails (field case C05's
// store side).
func TestLoopRecordsHealth(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.poller = h.newPoller(h.store, func(c *PollerConfig) {
		c.Health = h.store
		c.Master = "m1"
		c.Repo.PollInterval = config.Duration(100 * time.Millisecond)
	})
	ctx := context.Background()
	if err := h.poller.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer h.poller.Stop()
	waitHealth := func(ok func(store.RepoHealth) bool) store.RepoHealth {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			all, err := h.store.ReposHealth(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if ok(all["app"]) {
				return all["app"]
			}
			if time.Now().After(deadline) {
				t.Fatalf("health = %+v", all["app"])
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	got := waitHealth(func(r store.RepoHealth) bool { return r.LastSuccess != nil && r.NextPoll != nil })
	if got.Master != "m1" || !got.NextPoll.After(*got.LastSuccess) {
		t.Fatalf("health = %+v", got)
	}
	if err := os.Rename(h.remote.bare, h.remote.bare+".away"); err != nil {
		t.Fatal(err)
	}
	got = waitHealth(func(r store.RepoHealth) bool { return r.FailingSince != nil })
	if got.LastError == "" {
		t.Fatalf("failing health without error: %+v", got)
	}
	if err := os.Rename(h.remote.bare+".away", h.remote.bare); err != nil {
		t.Fatal(err)
	}
	waitHealth(func(r store.RepoHealth) bool { return r.FailingSince == nil })
}
