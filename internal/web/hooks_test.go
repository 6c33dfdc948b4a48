package web

import (
	"bytes"
	"encoding/json"
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
	status, _ := e.postHookAnswer(path, h, body)
	return status
}

// postHookAnswer delivers body to a webhook path with headers and returns
// the status and the answer's fields.
func (e *testEnv) postHookAnswer(path string, h http.Header, body []byte) (int, map[string]any) {
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
	defer resp.Body.Close()
	var answer map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil {
		e.t.Fatalf("%s answered %d with a body that is not JSON: %v", path, resp.StatusCode, err)
	}
	return resp.StatusCode, answer
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
	const rev = "de8251ff97ee194a289832576287d6f8ad74e3d0"
	good := `{"repository": "app", "branch": "main", "revision": "` + rev + `"}`
	badRev := `{"repository": "app", "branch": "main", "revision": "HEAD~1"}`
	badBranch := `{"repository": "app", "branch": "--output=/tmp/x", "revision": "` + rev + `"}`
	cases := []struct {
		name   string
		h      http.Header
		body   string
		status int
	}{
		{"wrong secret", sign(good, "guess"), good, http.StatusUnauthorized},
		{"unsigned", nil, good, http.StatusUnauthorized},
		{"unknown repository", sign(`{"repository": "nope", "branch": "main", "revision": "`+rev+`"}`, "s3cret"),
			`{"repository": "nope", "branch": "main", "revision": "` + rev + `"}`, http.StatusNotFound},
		{"malformed", sign(`{"repository": 1}`, "s3cret"), `{"repository": 1}`, http.StatusBadRequest},
		{"malformed, unsigned", nil, `{}`, http.StatusUnauthorized},
		{"malformed, wrong secret", sign(`{}`, "guess"), `{}`, http.StatusUnauthorized},
		{"revision not a commit id", sign(badRev, "s3cret"), badRev, http.StatusBadRequest},
		{"branch taken for an option", sign(badBranch, "s3cret"), badBranch, http.StatusBadRequest},
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
	if err != nil || len(cs) != 1 || cs[0].Revision != rev {
		t.Fatalf("changes = %+v, %v; want the one good delivery", cs, err)
	}
	if got := e.postHook("/api/v1/hooks/github", nil, []byte(good)); got != http.StatusUnauthorized {
		t.Fatalf("github without signature: %d", got)
	}
}

// hookEnv is a server whose configuration has one repository, app,
// receiving webhooks signed with "s3cret".
func hookEnv(t *testing.T) *testEnv {
	e := newEnv(t, func(c *Config) { c.Secrets = config.MapSecrets{"app-hook": "s3cret"} })
	st := baseState()
	st.Repos = []config.Repo{{Name: "app", URL: "https://git.example.test/acme/app.git",
		Branches: []string{"main"}, WebhookSecret: "app-hook"}}
	e.apply(st)
	return e
}

// Every source checks the signature or token before it reads the body:
// a body that is no payload at all answers 401 when unsigned or signed
// with another secret, and only a correctly signed one answers 400.
func TestHooksCheckTheSignatureBeforeTheBody(t *testing.T) {
	t.Parallel()
	e := hookEnv(t)
	body := []byte(`{}`)
	headers := map[string]func(secret string) http.Header{
		"github": func(secret string) http.Header {
			return http.Header{"X-Github-Event": {"push"},
				"X-Hub-Signature-256": {"sha256=" + changes.Sign(body, secret)}}
		},
		"gitlab": func(secret string) http.Header {
			return http.Header{"X-Gitlab-Event": {"Push Hook"}, "X-Gitlab-Token": {secret}}
		},
		"gitea": func(secret string) http.Header {
			return http.Header{"X-Gitea-Event": {"push"}, "X-Gitea-Signature": {changes.Sign(body, secret)}}
		},
		"generic": func(secret string) http.Header {
			return http.Header{"X-Regent-Signature": {"sha256=" + changes.Sign(body, secret)}}
		},
	}
	for _, src := range changes.Sources {
		path := "/api/v1/hooks/" + src
		for name, h := range map[string]http.Header{"unsigned": {}, "wrong secret": headers[src]("guess")} {
			if got := e.postHook(path, h, body); got != http.StatusUnauthorized {
				t.Errorf("%s, %s: status %d, want 401", src, name, got)
			}
		}
		want := http.StatusBadRequest
		if src == "gitlab" {
			want = http.StatusNotFound // an event without object_kind, naming no repository
		}
		if got := e.postHook(path, headers[src]("s3cret"), body); got != want {
			t.Errorf("%s, signed: status %d, want %d", src, got, want)
		}
	}
}

// A delivery that is new but brings only commits already recorded answers
// why it recorded nothing in "ignored".
func TestHookSaysWhyAKnownCommitRecordsNothing(t *testing.T) {
	t.Parallel()
	e := hookEnv(t)
	const rev = "de8251ff97ee194a289832576287d6f8ad74e3d0"
	if _, isNew, err := e.store.AddChange(e.ctx, store.Change{Repository: "app", Branch: "main",
		Revision: rev, Files: []string{}}); err != nil || !isNew {
		t.Fatalf("record the change a poll would have: %v, %v", isNew, err)
	}
	body := []byte(`{"repository": "app", "branch": "main", "revision": "` + rev + `"}`)
	h := http.Header{"X-Regent-Signature": {"sha256=" + changes.Sign(body, "s3cret")}}
	status, answer := e.postHookAnswer("/api/v1/hooks/generic", h, body)
	ignored, _ := answer["ignored"].(string)
	if status != http.StatusOK || answer["duplicate"] != false || !strings.Contains(ignored, "already recorded") {
		t.Fatalf("answer %d %v; want 200, not a duplicate, ignored saying the commit is already recorded",
			status, answer)
	}
}
