package web

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/regent-ci/regent/internal/build"
	"github.com/regent-ci/regent/internal/config"
	"github.com/regent-ci/regent/internal/store"
)

func TestAPIResourceShapes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	done := e.finishedBuild("app", build.Success, "ok\n")
	running := e.startBuild("docs", map[string]string{"revision": "abc123"})
	running.startStep(1, "test")
	change, _, err := e.store.AddChange(e.ctx, store.Change{Repository: "repo", Branch: "main",
		Revision: "abc123", Author: "Ada", Comments: "fix", When: time.Now()})
	if err != nil {
		t.Fatal(err)
	}

	// Every field DESIGN.md names must be present, with null where there
	// is no value yet.
	fields := func(keys ...string) []string { return keys }
	buildFields := fields("id", "builder", "number", "state", "result", "reason", "properties",
		"retry_of", "worker", "created_at", "started_at", "finished_at")
	cases := []struct {
		path string
		list bool
		want []string
	}{
		{"/api/v1/builders", true, fields("id", "name", "description", "tags", "workers",
			"created_generation", "retired_generation", "last_build")},
		{"/api/v1/builders/app", false, fields("name", "workers", "last_build")},
		{"/api/v1/builds", true, buildFields},
		{fmt.Sprintf("/api/v1/builds/%d", done.ID), false, buildFields},
		{fmt.Sprintf("/api/v1/builds/%d/steps", done.ID), true, fields("number", "name", "state",
			"result", "log_size", "started_at", "finished_at")},
		{fmt.Sprintf("/api/v1/builds/%d/steps/1", running.ID), false, fields("number", "state", "log_size")},
		{"/api/v1/buildsets", true, fields("id", "reason", "scheduler", "properties", "created_at")},
		{"/api/v1/buildsets/1", false, fields("id", "reason", "requests")},
		{"/api/v1/requests", true, fields("id", "builder", "state", "reason", "submitted_at",
			"claimed_at", "build")},
		{"/api/v1/requests/1", false, fields("id", "builder", "state", "build")},
		{"/api/v1/changes", true, fields("id", "repository", "branch", "revision", "author",
			"comments", "files", "when")},
		{fmt.Sprintf("/api/v1/changes/%d", change.ID), false, fields("id", "revision")},
		{"/api/v1/workers", true, fields("name", "state", "master", "last_seen", "max_builds",
			"retired_generation")},
		{"/api/v1/workers/w1", false, fields("name", "state")},
		{"/api/v1/config/generations", true, fields("number", "content_hash", "source",
			"applied_by", "applied_at")},
		{"/api/v1/config/generations/1", false, fields("number", "state")},
	}
	for _, c := range cases {
		t.Run(strings.TrimPrefix(c.path, "/api/v1/"), func(t *testing.T) {
			m := e.getJSON(c.path, http.StatusOK)
			objs := []map[string]any{m}
			if c.list {
				objs = items(t, m)
				if len(objs) == 0 {
					t.Fatalf("empty list: %v", m)
				}
			}
			for _, o := range objs {
				for _, k := range c.want {
					if _, ok := o[k]; !ok {
						t.Errorf("%s: field %q missing in %v", c.path, k, o)
					}
				}
			}
		})
	}

	b := e.getJSON(fmt.Sprintf("/api/v1/builds/%d", done.ID), http.StatusOK)
	if b["state"] != "finished" || b["result"] != "success" || b["worker"] != "w1" || b["builder"] != "app" {
		t.Errorf("finished build = %v", b)
	}
	if at, _ := b["finished_at"].(string); !strings.HasSuffix(at, "Z") {
		t.Errorf("finished_at = %q, want an RFC 3339 UTC time", at)
	} else if _, err := time.Parse(time.RFC3339, at); err != nil {
		t.Errorf("finished_at: %v", err)
	}
	r := e.getJSON(fmt.Sprintf("/api/v1/builds/%d", running.ID), http.StatusOK)
	if r["state"] != "running" || r["result"] != nil || r["finished_at"] != nil {
		t.Errorf("running build = %v", r)
	}
	if props := r["properties"].(map[string]any); props["revision"] != "abc123" {
		t.Errorf("properties = %v, want revision abc123", props)
	}
	app := e.getJSON("/api/v1/builders/app", http.StatusOK)
	if last := app["last_build"].(map[string]any); num(t, last, "id") != done.ID {
		t.Errorf("last_build of app = %v, want build %d", last, done.ID)
	}
	g := e.getJSON("/api/v1/config/generations/1", http.StatusOK)
	if st, ok := g["state"].(map[string]any); !ok || st["builders"] == nil {
		t.Errorf("generation 1 state = %v", g["state"])
	}
}

func TestAPIFilters(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.finishedBuild("app", build.Failure, "")
	e.startBuild("docs", nil)
	if _, _, err := e.store.CreateBuildset(e.ctx, store.BuildsetInput{
		Reason: "waiting", Scheduler: "force", Builders: []string{"app"}}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		path string
		want int
	}{
		{"/api/v1/builds", 2},
		{"/api/v1/builds?builder=app", 1},
		{"/api/v1/builds?state=running", 1},
		{"/api/v1/builds?state=finished&builder=docs", 0},
		{"/api/v1/requests", 3},
		{"/api/v1/requests?state=pending", 1},
		{"/api/v1/requests?builder=docs&state=claimed", 1},
	}
	for _, c := range cases {
		if got := len(items(t, e.getJSON(c.path, http.StatusOK))); got != c.want {
			t.Errorf("GET %s: %d items, want %d", c.path, got, c.want)
		}
	}
}

func TestAPIPaging(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for range 5 {
		e.finishedBuild("app", build.Success, "")
	}
	for _, list := range []string{"builds", "buildsets", "requests", "config/generations"} {
		t.Run(list, func(t *testing.T) {
			if list == "config/generations" {
				for i := range 4 {
					st := baseState()
					st.Builders[0].Description = fmt.Sprint("version ", i)
					e.apply(st)
				}
			}
			key := "id"
			if list == "config/generations" {
				key = "number"
			}
			var seen []int64
			path := "/api/v1/" + list + "?limit=2"
			for pages := 0; ; pages++ {
				if pages > 5 {
					t.Fatalf("more pages than items")
				}
				m := e.getJSON(path, http.StatusOK)
				its := items(t, m)
				if len(its) > 2 {
					t.Fatalf("page of %d items with limit=2", len(its))
				}
				for _, it := range its {
					seen = append(seen, num(t, it, key))
				}
				if m["next"] == nil {
					break
				}
				next := num(t, m, "next")
				if next != seen[len(seen)-1] {
					t.Fatalf("next = %d, want the last id %d", next, seen[len(seen)-1])
				}
				path = fmt.Sprintf("/api/v1/%s?limit=2&before=%d", list, next)
			}
			if len(seen) != 5 {
				t.Fatalf("paged through %v, want 5 items", seen)
			}
			if !slices.IsSortedFunc(seen, func(a, b int64) int { return int(b - a) }) {
				t.Fatalf("items %v are not newest first", seen)
			}
		})
	}
}

func TestAPIRetired(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.finishedBuild("docs", build.Success, "")
	st := baseState()
	st.Builders = st.Builders[:1] // docs removed
	st.Workers = st.Workers[:1]   // w2 removed
	st.Schedulers[0].Builders = []string{"app"}
	gen := e.apply(st)

	names := func(path string) []string {
		var out []string
		for _, it := range items(t, e.getJSON(path, http.StatusOK)) {
			out = append(out, it["name"].(string))
			if it["name"] == "docs" || it["name"] == "w2" {
				if num(t, it, "retired_generation") != gen.Number {
					t.Errorf("%s: retired_generation = %v, want %d", path, it["retired_generation"], gen.Number)
				}
			} else if it["retired_generation"] != nil {
				t.Errorf("%s: active %v shows retired_generation", path, it["name"])
			}
		}
		return out
	}
	cases := []struct {
		path string
		want []string
	}{
		{"/api/v1/builders", []string{"app"}},
		{"/api/v1/builders?include=retired", []string{"app", "docs"}},
		{"/api/v1/workers", []string{"w1"}},
		{"/api/v1/workers?include=retired", []string{"w1", "w2"}},
	}
	for _, c := range cases {
		if got := names(c.path); !slices.Equal(got, c.want) {
			t.Errorf("GET %s: names %v, want %v", c.path, got, c.want)
		}
	}
	e.getJSON("/api/v1/builders/docs", http.StatusNotFound)
	e.getJSON("/api/v1/workers/w2", http.StatusNotFound)
	d := e.getJSON("/api/v1/builders/docs?include=retired", http.StatusOK)
	if num(t, d, "retired_generation") != gen.Number || d["last_build"] == nil {
		t.Errorf("retired builder = %v", d)
	}
	e.getJSON("/api/v1/workers/w2?include=retired", http.StatusOK)

	// History stays: the retired builder's build is still listed.
	if n := len(items(t, e.getJSON("/api/v1/builds?builder=docs", http.StatusOK))); n != 1 {
		t.Errorf("builds of retired docs: %d, want 1", n)
	}
	// A retired builder cannot be forced, and its builds not rebuilt.
	e.expectJSON(e.do("POST", "/api/v1/builders/docs/force", "", nil), "force retired", http.StatusNotFound)
	e.expectJSON(e.do("POST", "/api/v1/builds/1/rebuild", "", nil), "rebuild retired", http.StatusConflict)
}

func TestAPIForce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	body := `{"reason": "release", "properties": {"branch": "main", "jobs": 4, "fast": true}}`
	r := e.do("POST", "/api/v1/builders/app/force", body, nil)
	bs := e.expectJSON(r, "force", http.StatusCreated)
	id := num(t, bs, "id")
	if loc := r.Header.Get("Location"); loc != fmt.Sprintf("/api/v1/buildsets/%d", id) {
		t.Errorf("Location = %q", loc)
	}
	if bs["reason"] != "release" {
		t.Errorf("reason = %v", bs["reason"])
	}
	props := bs["properties"].(map[string]any)
	if props["branch"] != "main" || props["jobs"] != "4" || props["fast"] != "true" {
		t.Errorf("properties = %v", props)
	}
	reqs := bs["requests"].([]any)
	if len(reqs) != 1 {
		t.Fatalf("requests = %v", reqs)
	}
	if req := reqs[0].(map[string]any); req["builder"] != "app" || req["state"] != "pending" {
		t.Errorf("request = %v", req)
	}
	if e.wakes.Load() == 0 {
		t.Error("forcing did not wake dispatch")
	}
	// An empty body is a force with the default reason.
	e.expectJSON(e.do("POST", "/api/v1/builders/docs/force", "", nil), "force empty", http.StatusCreated)

	bad := []struct {
		name, body, want string
		status           int
	}{
		{"not json", `{reason`, "not the expected JSON", http.StatusBadRequest},
		{"unknown field", `{"reasn": "x"}`, `unknown field "reasn"`, http.StatusBadRequest},
		{"object property", `{"properties": {"a": {"b": 1}}}`, `property "a"`, http.StatusBadRequest},
		{"array body", `[1]`, "not the expected JSON", http.StatusBadRequest},
	}
	for _, c := range bad {
		m := e.expectJSON(e.do("POST", "/api/v1/builders/app/force", c.body, nil), c.name, c.status)
		if msg, _ := m["error"].(string); !strings.Contains(msg, c.want) {
			t.Errorf("%s: error %q, want it to mention %q", c.name, msg, c.want)
		}
	}
	m := e.expectJSON(e.do("POST", "/api/v1/builders/nope/force", "", nil), "unknown", http.StatusNotFound)
	if !strings.Contains(m["error"].(string), `"nope"`) {
		t.Errorf("error %v does not name the builder", m["error"])
	}
}

func TestAPICancelAndRebuild(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.startBuild("app", map[string]string{"revision": "r1"})
	b.startStep(1, "test")

	r := e.do("POST", fmt.Sprintf("/api/v1/builds/%d/cancel", b.ID), `{"reason": "wrong branch"}`, nil)
	if got := e.expectJSON(r, "cancel", http.StatusAccepted); num(t, got, "id") != b.ID {
		t.Errorf("cancel answered %v", got)
	}
	// The worker reports a failure; the build ends cancelled with the reason.
	b.finish(build.Failure)
	got := e.getJSON(fmt.Sprintf("/api/v1/builds/%d", b.ID), http.StatusOK)
	if got["result"] != "cancelled" || got["reason"] != "wrong branch" {
		t.Errorf("cancelled build = %v", got)
	}
	e.expectJSON(e.do("POST", fmt.Sprintf("/api/v1/builds/%d/cancel", b.ID), "", nil),
		"cancel finished", http.StatusConflict)
	e.expectJSON(e.do("POST", "/api/v1/builds/999/cancel", "", nil), "cancel unknown", http.StatusNotFound)

	r = e.do("POST", fmt.Sprintf("/api/v1/builds/%d/rebuild", b.ID), "", nil)
	bs := e.expectJSON(r, "rebuild", http.StatusCreated)
	if bs["reason"] != fmt.Sprintf("rebuild of build %d", b.ID) {
		t.Errorf("rebuild reason = %v", bs["reason"])
	}
	if props := bs["properties"].(map[string]any); props["revision"] != "r1" {
		t.Errorf("rebuild properties = %v", props)
	}
	if req := bs["requests"].([]any)[0].(map[string]any); req["builder"] != "app" {
		t.Errorf("rebuild request = %v", req)
	}
	// A second rebuild is a new buildset, not the first one again.
	again := e.expectJSON(e.do("POST", fmt.Sprintf("/api/v1/builds/%d/rebuild", b.ID), "", nil),
		"rebuild again", http.StatusCreated)
	if num(t, again, "id") == num(t, bs, "id") {
		t.Error("second rebuild returned the first buildset")
	}

	// A pending request can be cancelled once.
	reqID := num(t, again["requests"].([]any)[0].(map[string]any), "id")
	path := fmt.Sprintf("/api/v1/requests/%d/cancel", reqID)
	cr := e.expectJSON(e.do("POST", path, `{"reason": "not needed"}`, nil), "cancel request", http.StatusOK)
	if cr["state"] != "cancelled" || cr["reason"] != "not needed" {
		t.Errorf("cancelled request = %v", cr)
	}
	e.expectJSON(e.do("POST", path, "", nil), "cancel request twice", http.StatusConflict)
}

func TestAPIAdminToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.AdminToken = "s3cret" })
	b := e.startBuild("app", nil)
	actions := []string{
		"/api/v1/builders/app/force",
		fmt.Sprintf("/api/v1/builds/%d/rebuild", b.ID),
		fmt.Sprintf("/api/v1/builds/%d/cancel", b.ID),
		"/api/v1/requests/1/cancel",
	}
	for _, path := range actions {
		for _, auth := range []string{"", "Bearer wrong", "Bearer s3cret2", "s3cret", "Basic czNjcmV0"} {
			r := e.do("POST", path, "", map[string]string{"Authorization": auth})
			e.expectJSON(r, fmt.Sprintf("POST %s with %q", path, auth), http.StatusUnauthorized)
			if r.Header.Get("WWW-Authenticate") == "" {
				t.Errorf("POST %s: 401 without WWW-Authenticate", path)
			}
		}
	}
	ok := map[string]string{"Authorization": "Bearer s3cret"}
	e.expectJSON(e.do("POST", actions[0], "", ok), "force with token", http.StatusCreated)
	e.expectJSON(e.do("POST", actions[1], "", ok), "rebuild with token", http.StatusCreated)
	e.expectJSON(e.do("POST", actions[2], "", ok), "cancel with token", http.StatusAccepted)
	// Reading needs no token.
	e.getJSON("/api/v1/builds", http.StatusOK)
}

func TestAPIErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cases := []struct {
		method, path string
		status       int
	}{
		{"GET", "/api/v1/nothing", http.StatusNotFound},
		{"GET", "/api/v1/masters", http.StatusNotFound},
		{"GET", "/api/v1/builds/abc", http.StatusBadRequest},
		{"GET", "/api/v1/builds/0", http.StatusBadRequest},
		{"GET", "/api/v1/builds/-1/steps", http.StatusBadRequest},
		{"GET", "/api/v1/builds/42", http.StatusNotFound},
		{"GET", "/api/v1/builds/42/steps", http.StatusNotFound},
		{"GET", "/api/v1/builds/42/steps/1/log", http.StatusNotFound},
		{"GET", "/api/v1/builds/42/events", http.StatusNotFound},
		{"GET", "/api/v1/builders/nope", http.StatusNotFound},
		{"GET", "/api/v1/buildsets/42", http.StatusNotFound},
		{"GET", "/api/v1/requests/42", http.StatusNotFound},
		{"GET", "/api/v1/changes/42", http.StatusNotFound},
		{"GET", "/api/v1/workers/nope", http.StatusNotFound},
		{"GET", "/api/v1/config/generations/42", http.StatusNotFound},
		{"GET", "/api/v1/builds?limit=0", http.StatusBadRequest},
		{"GET", "/api/v1/builds?limit=x", http.StatusBadRequest},
		{"GET", "/api/v1/builds?before=-1", http.StatusBadRequest},
		{"GET", "/api/v1/builds?state=done", http.StatusBadRequest},
		{"GET", "/api/v1/requests?state=done", http.StatusBadRequest},
		{"GET", "/api/v1/builds/1/steps/x", http.StatusBadRequest},
		{"GET", "/api/v1/builds/1/steps/-1", http.StatusBadRequest},
		{"GET", "/api/v1/builds/1/steps/1.5/log", http.StatusBadRequest},
		{"GET", "/api/v1/builds/x/steps/1/log", http.StatusBadRequest},
		{"GET", "/api/v1/builds/x/events", http.StatusBadRequest},
		{"GET", "/api/v1/buildsets/x", http.StatusBadRequest},
		{"GET", "/api/v1/requests/x", http.StatusBadRequest},
		{"GET", "/api/v1/changes/x", http.StatusBadRequest},
		{"GET", "/api/v1/changes?before=x", http.StatusBadRequest},
		{"GET", "/api/v1/buildsets?limit=501", http.StatusBadRequest},
		{"GET", "/api/v1/config/generations/x", http.StatusBadRequest},
		{"GET", "/api/v1/config/generations?limit=abc", http.StatusBadRequest},
		{"GET", "/api/v1/builders?include=everything", http.StatusBadRequest},
		{"GET", "/api/v1/builders/app?include=x", http.StatusBadRequest},
		{"GET", "/api/v1/workers?include=all", http.StatusBadRequest},
		{"GET", "/api/v1/workers/w1?include=x", http.StatusBadRequest},
		{"GET", "/api/v1/builders/app/force", http.StatusMethodNotAllowed},
		{"DELETE", "/api/v1/builds", http.StatusMethodNotAllowed},
		{"POST", "/api/v1/builds/1", http.StatusMethodNotAllowed},
	}
	for _, c := range cases {
		m := e.expectJSON(e.do(c.method, c.path, "", nil), c.method+" "+c.path, c.status)
		if msg, _ := m["error"].(string); msg == "" {
			t.Errorf("%s %s: no error message in %v", c.method, c.path, m)
		}
	}
}

func TestAPIEmptyLists(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.apply(&config.State{})
	for _, path := range []string{"/api/v1/builders", "/api/v1/builds", "/api/v1/workers",
		"/api/v1/changes", "/api/v1/buildsets", "/api/v1/requests"} {
		r := e.do("GET", path, "", nil)
		if !strings.Contains(string(r.Body), `"items":[]`) || !strings.Contains(string(r.Body), `"next":null`) {
			t.Errorf("GET %s = %s, want an empty items list and a null next", path, r.Body)
		}
	}
}

// Without an admin token nothing but the origin checks keeps a web page
// on another site from taking actions through a visitor's browser.
func TestAPIActionsRefuseCrossSiteRequests(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.apply(&config.State{
		Workers:    []config.Worker{{Name: "w", Password: "p", MaxBuilds: 1}},
		Builders:   []config.Builder{{Name: "app", Workers: []string{"w"}, Steps: []config.Step{{Kind: config.StepShell, Name: "t", Command: "true"}}}},
		Schedulers: []config.Scheduler{{Name: "force", Kind: config.SchedulerForce, Builders: []string{"app"}}},
	})
	cases := []struct {
		name   string
		body   string
		header map[string]string
		status int
	}{
		{"cross-site fetch", `{}`, map[string]string{"Sec-Fetch-Site": "cross-site", "Content-Type": "application/json"}, http.StatusForbidden},
		{"foreign origin", `{}`, map[string]string{"Origin": "http://evil.example", "Content-Type": "application/json"}, http.StatusForbidden},
		{"form body", `{"reason": "x"}`, map[string]string{"Content-Type": "text/plain"}, http.StatusForbidden},
		{"too large", `{"reason": "` + strings.Repeat("x", 2<<20) + `"}`, map[string]string{"Content-Type": "application/json"}, http.StatusRequestEntityTooLarge},
		{"json from a tool", `{"reason": "x"}`, map[string]string{"Content-Type": "application/json"}, http.StatusCreated},
		{"no body", ``, nil, http.StatusCreated},
	}
	for _, c := range cases {
		r := e.do("POST", "/api/v1/builders/app/force", c.body, c.header)
		if r.Status != c.status {
			t.Errorf("%s: status %d, want %d; body %s", c.name, r.Status, c.status, r.Body)
		}
	}
}

func TestAPIGenerationDiff(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	step := []config.Step{{Kind: config.StepShell, Name: "t", Command: "true"}}
	workers := []config.Worker{{Name: "w", Password: "p", MaxBuilds: 1}}
	a := e.apply(&config.State{Workers: workers, Builders: []config.Builder{{Name: "unit", Workers: []string{"w"}, Steps: step}}})
	b := e.apply(&config.State{Workers: workers, Builders: []config.Builder{
		{Name: "unit-tests", PreviousNames: []string{"unit"}, Workers: []string{"w"}, Steps: step},
		{Name: "lint", Workers: []string{"w"}, Steps: step}}})
	d := e.getJSON(fmt.Sprintf("/api/v1/config/generations/%d/diff", b.Number), http.StatusOK)
	plan, _ := d["plan"].(string)
	if fmt.Sprint(d["from"]) != fmt.Sprint(a.Number) || fmt.Sprint(d["to"]) != fmt.Sprint(b.Number) ||
		!strings.Contains(plan, "+ builder lint") || !strings.Contains(plan, "unit-tests") {
		t.Fatalf("diff %d..%d = %v", a.Number, b.Number, d)
	}
	back := e.getJSON(fmt.Sprintf("/api/v1/config/generations/%d/diff?from=%d", a.Number, b.Number), http.StatusOK)
	if p, _ := back["plan"].(string); !strings.Contains(p, "- builder lint") {
		t.Fatalf("diff back = %v, want lint removed", back)
	}
	e.getJSON(fmt.Sprintf("/api/v1/config/generations/%d/diff?from=x", b.Number), http.StatusBadRequest)
	e.getJSON(fmt.Sprintf("/api/v1/config/generations/%d/diff?from=99", b.Number), http.StatusNotFound)
}
