package web

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/regent-ci/regent/internal/changes"
	"github.com/regent-ci/regent/internal/config"
	"github.com/regent-ci/regent/internal/store"
)

// postHook delivers body to a webhook path with headers and returns the
// status.
func (e *testEnv) postHook(path string, h http.Header, body []byte) int {
	e.t.Helper()
	req, err := http.NewRequest("POST", e.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// Webhooks need no admin token; they answer 401 for a bad signature, 404
// for a repository nobody configured, 413 for an oversized body and 400
// for a malformed one.
func TestHookStatuses(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) {
		c.AdminToken = "admin"
		c.Secrets = config.MapSecrets{"app-hook": "s3cret"}
	})
	st := baseState()
	st.Repos = []config.Repo{{Name: "app", URL: "https://git.example.test/acme/app.git",
		Branches: []string{"main"}, WebhookSecret: "app-hook"}}
	e.apply(st)
	sign := func(body, secret string) http.Header {
		return http.Header{"X-Regent-Signature": {"sha256=" + changes.Sign([]byte(body), secret)}}
	}
	good := `{"repository": "app", "branch": "main", "revision": "abc123"}`
	cases := []struct {
		name   string
		h      http.Header
		body   string
		status int
	}{
		{"wrong secret", sign(good, "guess"), good, http.StatusUnauthorized},
		{"unsigned", nil, good, http.StatusUnauthorized},
		{"unknown repository", sign(`{"repository": "nope", "branch": "main", "revision": "1"}`, "s3cret"),
			`{"repository": "nope", "branch": "main", "revision": "1"}`, http.StatusNotFound},
		{"malformed", sign(`{"repository": 1}`, "s3cret"), `{"repository": 1}`, http.StatusBadRequest},
		{"too large", sign(good, "s3cret"), good + strings.Repeat(" ", maxHookBody), http.StatusRequestEntityTooLarge},
		{"good", sign(good, "s3cret"), good, http.StatusOK},
		{"duplicate", sign(good, "s3cret"), good, http.StatusOK},
	}
	for _, tc := range cases {
		if got := e.postHook("/api/v1/hooks/generic", tc.h, []byte(tc.body)); got != tc.status {
			t.Fatalf("%s: status %d, want %d", tc.name, got, tc.status)
		}
	}
	cs, err := e.store.Changes(e.ctx, store.ListOptions{})
	if err != nil || len(cs) != 1 || cs[0].Revision != "abc123" {
		t.Fatalf("changes = %+v, %v; want the one good delivery", cs, err)
	}
	if got := e.postHook("/api/v1/hooks/github", nil, []byte(good)); got != http.StatusUnauthorized {
		t.Fatalf("github without signature: %d", got)
	}
}
