package changes

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/regent-ci/regent/internal/config"
	"github.com/regent-ci/regent/internal/store"
	"github.com/regent-ci/regent/internal/testutil/pgtest"
)

const (
	appSecret   = "app-hook-secret"
	otherSecret = "other-hook-secret"
)

// hookStore is a SQLite store whose active generation has two
// repositories receiving webhooks: app (watching main and tags v*) and
// other.
func hookStore(t *testing.T) *store.Store {
	t.Helper()
	return hookStoreAt(t, filepath.Join(t.TempDir(), "regent.db"))
}

// hookStoreAt is hookStore on the database dsn names.
func hookStoreAt(t *testing.T, dsn string) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	st := &config.State{Repos: []config.Repo{
		{Name: "app", URL: "ssh://git@git.example.test:22/acme/app", Branches: []string{"main"},
			Tags: []string{"v*"}, WebhookSecret: "app-hook"},
		{Name: "other", URL: "https://git.example.test/acme/other.git", Branches: []string{"main"},
			WebhookSecret: "other-hook"},
		{Name: "unsigned", URL: "https://git.example.test/acme/unsigned.git", Branches: []string{"main"}},
	}}
	if _, err := s.Apply(context.Background(), st, "test", "tester"); err != nil {
		t.Fatal(err)
	}
	return s
}

func newReceiver(t *testing.T, s *store.Store) *Receiver {
	t.Helper()
	r, err := NewReceiver(ReceiverConfig{Store: s, MaxChanges: 5,
		Secrets: config.MapSecrets{"app-hook": appSecret, "other-hook": otherSecret}})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// signed returns the headers a forge sends with body for event, signed
// with secret.
func signed(source, event, delivery string, body []byte, secret string) http.Header {
	h := http.Header{}
	switch source {
	case SourceGitHub:
		h.Set("X-GitHub-Event", event)
		h.Set("X-GitHub-Delivery", delivery)
		h.Set("X-Hub-Signature-256", "sha256="+Sign(body, secret))
	case SourceGitLab:
		h.Set("X-Gitlab-Event", event)
		h.Set("X-Gitlab-Event-UUID", delivery)
		h.Set("X-Gitlab-Token", secret)
	case SourceGitea:
		h.Set("X-Gitea-Event", event)
		h.Set("X-Gitea-Delivery", delivery)
		h.Set("X-Gitea-Signature", Sign(body, secret))
	case SourceGeneric:
		h.Set("X-Regent-Delivery", delivery)
		h.Set("X-Regent-Signature", "sha256="+Sign(body, secret))
	}
	return h
}

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "webhooks", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// recorded lists the stored changes as branch@revision/category, oldest
// first.
func recorded(t *testing.T, s *store.Store) []string {
	t.Helper()
	cs, err := s.Changes(context.Background(), store.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for i := len(cs) - 1; i >= 0; i-- {
		out = append(out, cs[i].Branch+"@"+cs[i].Revision[:4]+"/"+cs[i].Category)
	}
	return out
}

// Must-show 5 of the webhooks: payloads in each forge's documented
// format are accepted and recorded once; the same payload with a wrong
// signature, or none, is refused and records nothing.
func TestForgePayloadsAcceptedAndWrongSignaturesRefused(t *testing.T) {
	t.Parallel()
	cases := []struct {
		source, event, file string
		want                []string
	}{
		{SourceGitHub, "push", "github_push.json", []string{"main@2222/", "main@3333/"}},
		{SourceGitHub, "pull_request", "github_pull_request.json", []string{"refs/pull/12/head@5555/pull_request"}},
		{SourceGitLab, "Push Hook", "gitlab_push.json", []string{"main@2222/", "main@3333/"}},
		{SourceGitLab, "Merge Request Hook", "gitlab_merge_request.json",
			[]string{"refs/merge-requests/7/head@5555/pull_request"}},
		{SourceGitea, "push", "gitea_push.json", []string{"main@2222/", "main@3333/"}},
		{SourceGitea, "pull_request", "gitea_pull_request.json", []string{"refs/pull/9/head@6666/pull_request"}},
		{SourceGeneric, "", "generic_push.json", []string{"main@2222/", "main@3333/"}},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			t.Parallel()
			s := hookStore(t)
			r := newReceiver(t, s)
			ctx := context.Background()
			body := fixture(t, tc.file)

			for name, h := range map[string]http.Header{
				"wrong secret": signed(tc.source, tc.event, "d1", body, "not-the-secret"),
				"no signature": func() http.Header {
					h := signed(tc.source, tc.event, "d1", body, appSecret)
					for _, k := range []string{"X-Hub-Signature-256", "X-Gitlab-Token", "X-Gitea-Signature", "X-Regent-Signature"} {
						h.Del(k)
					}
					return h
				}(),
			} {
				if _, err := r.Receive(ctx, tc.source, h, body); !errors.Is(err, ErrUnauthorized) {
					t.Fatalf("%s: err = %v, want ErrUnauthorized", name, err)
				}
			}
			// GitLab sends its token as is, without signing the body.
			if tc.source != SourceGitLab {
				tampered := []byte(strings.Replace(string(body), "3333", "3334", 1))
				h := signed(tc.source, tc.event, "d1", body, appSecret)
				if _, err := r.Receive(ctx, tc.source, h, tampered); !errors.Is(err, ErrUnauthorized) {
					t.Fatalf("tampered body: err = %v, want ErrUnauthorized", err)
				}
			}
			if got := recorded(t, s); len(got) != 0 {
				t.Fatalf("refused deliveries recorded %v", got)
			}
			if ds, _ := s.WebhookDeliveries(ctx, "app", 10); len(ds) != 0 {
				t.Fatalf("refused deliveries were stored: %+v", ds)
			}

			rc, err := r.Receive(ctx, tc.source, signed(tc.source, tc.event, "d1", body, appSecret), body)
			if err != nil || rc.Repository != "app" || rc.Duplicate || len(rc.Changes) != len(tc.want) {
				t.Fatalf("receipt %+v, %v", rc, err)
			}
			if got := recorded(t, s); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("recorded %v, want %v", got, tc.want)
			}
			for _, id := range []string{"d1", "d2"} {
				rc, err = r.Receive(ctx, tc.source, signed(tc.source, tc.event, id, body, appSecret), body)
				if err != nil || !rc.Duplicate || len(rc.Changes) != 0 {
					t.Fatalf("redelivery %s: receipt %+v, %v; want a duplicate", id, rc, err)
				}
			}
		})
	}
}

func TestPushPayloadFieldsBecomeTheChange(t *testing.T) {
	t.Parallel()
	s := hookStore(t)
	r := newReceiver(t, s)
	body := fixture(t, "github_push.json")
	if _, err := r.Receive(context.Background(), SourceGitHub, signed(SourceGitHub, "push", "d", body, appSecret), body); err != nil {
		t.Fatal(err)
	}
	cs, _ := s.Changes(context.Background(), store.ListOptions{})
	c := cs[1]
	if c.Repository != "app" || c.Author != "Ada Lovelace <ada@example.test>" ||
		c.Comments != "Parse the new header\n\nThe old one is kept for a release." ||
		!reflect.DeepEqual(c.Files, []string{"README.md", "parse/header.go"}) ||
		c.When.Format("2006-01-02T15:04:05Z07:00") != "2024-05-06T07:10:11Z" {
		t.Fatalf("change = %+v", c)
	}
	pr := fixture(t, "github_pull_request.json")
	if _, err := r.Receive(context.Background(), SourceGitHub, signed(SourceGitHub, "pull_request", "p", pr, appSecret), pr); err != nil {
		t.Fatal(err)
	}
	cs, _ = s.Changes(context.Background(), store.ListOptions{Limit: 1})
	want := map[string]string{PropPRNumber: "12", PropPRURL: "https://git.example.test/acme/app/pull/12",
		PropBaseBranch: "main", PropHeadBranch: "faster", PropHeadRepository: "https://git.example.test/grace/app.git"}
	if !reflect.DeepEqual(cs[0].Properties, want) || cs[0].Author != "grace" {
		t.Fatalf("pull request change = %+v", cs[0])
	}
}

// A delivery signed with one repository's secret that names a repository
// without that secret is for an unknown repository, not a forgery.
func TestUnknownRepositoryIs404AndUnsignedRepositoriesTakeNothing(t *testing.T) {
	t.Parallel()
	s := hookStore(t)
	r := newReceiver(t, s)
	ctx := context.Background()
	body := []byte(`{"repository": "https://git.example.test/acme/nowhere.git", "branch": "main", "revision": "abababababababababababababababababababab"}`)
	if _, err := r.Receive(ctx, SourceGeneric, signed(SourceGeneric, "", "", body, otherSecret), body); !errors.Is(err, ErrUnknownRepository) {
		t.Fatalf("err = %v, want ErrUnknownRepository", err)
	}
	body = []byte(`{"repository": "other", "branch": "main", "revision": "abababababababababababababababababababab"}`)
	if _, err := r.Receive(ctx, SourceGeneric, signed(SourceGeneric, "", "", body, appSecret), body); !errors.Is(err, ErrUnknownRepository) {
		t.Fatalf("app's secret for other: err = %v, want ErrUnknownRepository", err)
	}
	body = []byte(`{"repository": "unsigned", "branch": "main", "revision": "abababababababababababababababababababab"}`)
	if _, err := r.Receive(ctx, SourceGeneric, signed(SourceGeneric, "", "", body, ""), body); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("repository without secret: err = %v, want ErrUnauthorized", err)
	}
	if got := recorded(t, s); len(got) != 0 {
		t.Fatalf("recorded %v", got)
	}
}

func TestIgnoredDeliveriesRecordNothing(t *testing.T) {
	t.Parallel()
	s := hookStore(t)
	r := newReceiver(t, s)
	ctx := context.Background()
	cases := []struct {
		source, event, body, why string
	}{
		{SourceGitHub, "ping", `{"zen": "Keep it simple.", "repository": {"clone_url": "https://git.example.test/acme/app.git"}}`, "ping"},
		{SourceGitHub, "push", `{"ref": "refs/heads/main", "before": "1212121212121212121212121212121212121212", "after": "0000000000000000000000000000000000000000",
			"repository": {"clone_url": "https://git.example.test/acme/app.git"}}`, "deleted"},
		{SourceGitHub, "push", `{"ref": "refs/heads/wip", "before": "1212121212121212121212121212121212121212", "after": "5656565656565656565656565656565656565656",
			"repository": {"clone_url": "https://git.example.test/acme/app.git"}}`, "not watched"},
		{SourceGitHub, "push", `{"ref": "refs/tags/nightly", "before": "0000000000000000000000000000000000000000", "after": "5656565656565656565656565656565656565656",
			"repository": {"clone_url": "https://git.example.test/acme/app.git"}}`, "not watched"},
		{SourceGitHub, "pull_request", `{"action": "closed", "number": 3, "pull_request": {"head": {"sha": "7777777777777777777777777777777777777777"}},
			"repository": {"clone_url": "https://git.example.test/acme/app.git"}}`, "builds nothing"},
		{SourceGitLab, "Merge Request Hook", `{"object_kind": "merge_request", "project": {"git_http_url": "https://git.example.test/acme/app.git"},
			"object_attributes": {"iid": 3, "action": "update", "last_commit": {"id": "8888888888888888888888888888888888888888"}}}`, "builds nothing"},
		{SourceGitHub, "issues", `{"repository": {"clone_url": "https://git.example.test/acme/app.git"}}`, "not one Regent acts on"},
	}
	for _, tc := range cases {
		body := []byte(tc.body)
		rc, err := r.Receive(ctx, tc.source, signed(tc.source, tc.event, "", body, appSecret), body)
		if err != nil || !strings.Contains(rc.Ignored, tc.why) {
			t.Fatalf("%s %s: receipt %+v, %v; want ignored for %q", tc.source, tc.event, rc, err, tc.why)
		}
	}
	tag := []byte(`{"ref": "refs/tags/v1.2", "before": "0000000000000000000000000000000000000000", "after": "9999999999999999999999999999999999999999",
		"repository": {"clone_url": "https://git.example.test/acme/app.git"}}`)
	if _, err := r.Receive(ctx, SourceGitHub, signed(SourceGitHub, "push", "", tag, appSecret), tag); err != nil {
		t.Fatal(err)
	}
	if got := recorded(t, s); !reflect.DeepEqual(got, []string{"refs/tags/v1.2@9999/tag"}) {
		t.Fatalf("recorded %v, want only the watched tag", got)
	}
}

func TestMalformedDeliveriesAreBadRequests(t *testing.T) {
	t.Parallel()
	s := hookStore(t)
	r := newReceiver(t, s)
	for _, body := range []string{`not json`, `{"ref": "refs/heads/main"}`, `{"repository": "app", "branch": "main"}`,
		`{"repository": "app", "branch": "main", "tag": "v1", "revision": "1"}`, `{"repository": "app", "branch": "main", "revision": "1", "extra": 1}`} {
		src := SourceGeneric
		if strings.Contains(body, "ref") {
			src = SourceGitHub
		}
		h := signed(src, "push", "", []byte(body), appSecret)
		if _, err := r.Receive(context.Background(), src, h, []byte(body)); !errors.Is(err, ErrBadDelivery) {
			t.Fatalf("%s: err = %v, want ErrBadDelivery", body, err)
		}
	}
}

// A pull or merge request ref names a request by a number from 1 up: a
// delivery numbering it otherwise, from any forge, is a bad delivery and
// records nothing.
func TestNonPositiveRequestNumbersAreBadDeliveries(t *testing.T) {
	t.Parallel()
	s := hookStore(t)
	r := newReceiver(t, s)
	const head = `"head": {"sha": "7777777777777777777777777777777777777777"}`
	const repo = `"repository": {"clone_url": "https://git.example.test/acme/app.git"}`
	cases := []struct{ source, event, body string }{
		{SourceGitHub, "pull_request", `{"action": "opened", "number": -5, "pull_request": {` + head + `}, ` + repo + `}`},
		{SourceGitHub, "pull_request", `{"action": "opened", "pull_request": {"number": -1, ` + head + `}, ` + repo + `}`},
		{SourceGitea, "pull_request", `{"action": "opened", "number": -2, "pull_request": {` + head + `}, ` + repo + `}`},
		{SourceGitLab, "Merge Request Hook", `{"object_kind": "merge_request", "project": {"git_http_url": "https://git.example.test/acme/app.git"},
			"object_attributes": {"iid": -3, "action": "open", "last_commit": {"id": "8888888888888888888888888888888888888888"}}}`},
	}
	for _, tc := range cases {
		body := []byte(tc.body)
		rc, err := r.Receive(context.Background(), tc.source, signed(tc.source, tc.event, "", body, appSecret), body)
		if !errors.Is(err, ErrBadDelivery) || !strings.Contains(err.Error(), "not a pull or merge request number") {
			t.Errorf("%s %s: receipt %+v, %v; want ErrBadDelivery for the number", tc.source, tc.body, rc, err)
		}
	}
	if got := recorded(t, s); len(got) != 0 {
		t.Fatalf("recorded %v, want nothing", got)
	}
}

// The same delivery id again is a duplicate even when the first delivery
// recorded no change (a ping, an unwatched branch), on SQLite and
// PostgreSQL; another delivery id, or none, is not.
func TestRepeatedDeliveryIDIsADuplicateEvenWhenIgnored(t *testing.T) {
	t.Parallel()
	for name, dsn := range map[string]func(t *testing.T) string{
		"sqlite":   func(t *testing.T) string { return filepath.Join(t.TempDir(), "regent.db") },
		"postgres": func(t *testing.T) string { return pgtest.URL(t) },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r := newReceiver(t, hookStoreAt(t, dsn(t)))
			ping := []byte(`{"zen": "Keep it simple.", "repository": {"clone_url": "https://git.example.test/acme/app.git"}}`)
			wip := []byte(`{"ref": "refs/heads/wip", "before": "1212121212121212121212121212121212121212",
				"after": "5656565656565656565656565656565656565656", "repository": {"clone_url": "https://git.example.test/acme/app.git"}}`)
			steps := []struct {
				event, delivery string
				body            []byte
				duplicate       bool
			}{
				{"ping", "p1", ping, false},
				{"ping", "p1", ping, true},
				{"ping", "p2", ping, false},
				{"ping", "", ping, false},
				{"ping", "", ping, false},
				{"push", "w1", wip, false},
				{"push", "w1", wip, true},
				{"push", "w2", wip, false},
			}
			for i, st := range steps {
				h := signed(SourceGitHub, st.event, st.delivery, st.body, appSecret)
				rc, err := r.Receive(context.Background(), SourceGitHub, h, st.body)
				if err != nil || rc.Duplicate != st.duplicate || (rc.Ignored == "") != st.duplicate {
					t.Fatalf("step %d (%s %q): receipt %+v, %v; want duplicate %v, ignored only when not",
						i+1, st.event, st.delivery, rc, err, st.duplicate)
				}
			}
		})
	}
}

func TestManyCommitsAreCappedWithASummary(t *testing.T) {
	t.Parallel()
	s := hookStore(t)
	r := newReceiver(t, s)
	var commits []string
	for i := range 12 {
		commits = append(commits, fmt.Sprintf(`{"revision": "%040x", "files": ["f%c"]}`, i+1, 'a'+i))
	}
	body := []byte(fmt.Sprintf(`{"repository": "app", "branch": "main", "revision": "%040x", "commits": [%s]}`,
		12, strings.Join(commits, ",")))
	rc, err := r.Receive(context.Background(), SourceGeneric, signed(SourceGeneric, "", "", body, appSecret), body)
	if err != nil || len(rc.Changes) != 5 {
		t.Fatalf("receipt %+v, %v; want 5 changes", rc, err)
	}
	cs, _ := s.Changes(context.Background(), store.ListOptions{Limit: 1})
	if cs[0].Revision != fmt.Sprintf("%040x", 12) || len(cs[0].Files) != 8 || !strings.Contains(cs[0].Comments, "stands for 8 commits") {
		t.Fatalf("summary change = %+v", cs[0])
	}
}

func TestRepositoryURLsMatchAcrossForms(t *testing.T) {
	t.Parallel()
	same := [][2]string{
		{"https://github.com/Acme/App.git", "git@github.com:acme/app.git"},
		{"ssh://git@github.com:22/acme/app", "https://user:pw@github.com/acme/app/"},
		{"https://git.example.test/acme/app", "git://git.example.test/acme/app.git"},
	}
	for _, p := range same {
		if !sameRepoURL(p[0], p[1]) {
			t.Errorf("%s and %s differ", p[0], p[1])
		}
	}
	for _, p := range [][2]string{
		{"https://github.com/acme/app", "https://github.com/acme/app2"},
		{"https://github.com/acme/app", "https://gitlab.com/acme/app"},
		{"", ""},
	} {
		if sameRepoURL(p[0], p[1]) {
			t.Errorf("%q and %q match", p[0], p[1])
		}
	}
}
