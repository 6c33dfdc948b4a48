package web

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/regent-ci/regent/internal/config"
	"github.com/regent-ci/regent/internal/store"
)

// The store's side of field case C05 as the API and the UI show it: a
// failing poller shows its last success and error, and is flagged stale
// once it has not succeeded for five poll intervals; it recovers when a
// poll succeeds.
func TestReposShowPollerHealthC05(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	st := baseState()
	st.Repos = []config.Repo{
		{Name: "app", URL: "https://bot:hunter2@git.example.test/app.git", Branches: []string{"main"},
			PollInterval: config.Duration(time.Minute)},
		{Name: "hooked", URL: "https://git.example.test/hooked.git", Branches: []string{"main"},
			WebhookSecret: "hook"},
	}
	e.apply(st)
	now := time.Now()
	report := func(at time.Time, err string) {
		t.Helper()
		if err := e.store.RecordPollHealth(e.ctx, store.PollReport{Repository: "app", Master: "m1",
			At: at, Err: err, NextPoll: at.Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
	}
	report(now.Add(-10*time.Minute), "")
	report(now.Add(-9*time.Minute), "git fetch: could not resolve host")
	report(now.Add(-time.Minute), "git fetch: could not resolve host")

	app := e.getJSON("/api/v1/repos/app", http.StatusOK)
	if app["failing"] != true || app["stale"] != true || app["stale_after"] != "5m0s" ||
		!strings.Contains(app["last_error"].(string), "resolve host") || app["last_success"] == nil ||
		app["failing_since"] == nil || app["next_poll"] == nil || strings.Contains(app["url"].(string), "hunter2") {
		t.Fatalf("failing repository = %v", app)
	}
	list := items(t, e.getJSON("/api/v1/repos", http.StatusOK))
	if len(list) != 2 {
		t.Fatalf("repos = %v", list)
	}
	if hooked := list[1]; hooked["poll_interval"] != nil || hooked["webhooks"] != true || hooked["stale"] != false {
		t.Fatalf("webhook-only repository = %v", hooked)
	}
	page := e.do("GET", "/repos", "", nil)
	if page.Status != http.StatusOK || !strings.Contains(string(page.Body), "stale: no success for over 5m0s") ||
		!strings.Contains(string(page.Body), "resolve host") {
		t.Fatalf("repos page: %d\n%s", page.Status, page.Body)
	}

	report(now, "")
	app = e.getJSON("/api/v1/repos/app", http.StatusOK)
	if app["failing"] != false || app["stale"] != false || app["failing_since"] != nil || app["last_error"] == "" {
		t.Fatalf("recovered repository = %v", app)
	}
	e.getJSON("/api/v1/repos/nope", http.StatusNotFound)
}
