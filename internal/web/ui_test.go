package web

import (
	"context"
	"fmt"
	"html"
	"io/fs"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/regent-ci/regent/internal/build"
	"github.com/regent-ci/regent/internal/store"
)

// page fetches a UI page and checks its status and type.
func (e *testEnv) page(path string, wantStatus int) string {
	e.t.Helper()
	r := e.do("GET", path, "", nil)
	if r.Status != wantStatus {
		e.t.Fatalf("GET %s: status %d, want %d; body %s", path, r.Status, wantStatus, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		e.t.Fatalf("GET %s: Content-Type %q", path, ct)
	}
	if csp := r.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
		e.t.Fatalf("GET %s: Content-Security-Policy %q", path, csp)
	}
	return string(r.Body)
}

func TestUIPages(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	done := e.finishedBuild("app", build.Failure, "boom\n")
	running := e.startBuild("docs", map[string]string{"revision": "cafe1234"})
	running.startStep(1, "compile <docs>")
	if _, _, err := e.store.AddChange(e.ctx, store.Change{Repository: "repo", Branch: "main",
		Revision: "0123456789abcdef", Author: "Ada", Comments: "Fix the frobnicator\n\nbody"}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		path string
		want []string
	}{
		{"/", []string{"Builders", `href="/builders/app"`, "failure", "the application"}},
		{"/builders/app", []string{"Force a build", `action="/builders/app/force"`, "#1"}},
		{"/builds", []string{"app #1", "docs #1", "running"}},
		{"/builds?state=running", []string{"docs #1"}},
		{fmt.Sprintf("/builds/%d", done.ID), []string{"failure", "Rebuild", `data-step="1"`,
			"/api/v1/builds/1/steps/1/log", "/api/v1/builds/1/events?offsets=1:0"}},
		{fmt.Sprintf("/builds/%d", running.ID), []string{"Cancel build", "compile &lt;docs&gt;",
			"cafe1234"}},
		{"/buildsets/2", []string{"docs", "build 2", "cafe1234"}},
		{"/workers", []string{"w1", "busy", "w2", "offline"}},
		{"/changes", []string{"0123456789ab", "Fix the frobnicator"}},
		{"/generations", []string{`href="/generations/1"`, "active", "tester"}},
		{"/generations/1", []string{"Desired state", "&#34;builders&#34;"}},
	}
	for _, c := range cases {
		body := e.page(c.path, http.StatusOK)
		for _, w := range c.want {
			if !strings.Contains(body, w) {
				t.Errorf("GET %s: page lacks %q", c.path, w)
			}
		}
	}
	e.page("/nowhere", http.StatusNotFound)
	e.page("/builds/999", http.StatusNotFound)
	e.page("/builds/abc", http.StatusBadRequest)
	e.page("/builders/nope", http.StatusNotFound)
	e.page("/generations/7", http.StatusNotFound)
}

func TestUIFragments(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.finishedBuild("app", build.Success, "")
	for _, path := range []string{"/", "/builds", "/workers", "/changes", "/builders/app", "/buildsets/1"} {
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		body := e.page(path+sep+"fragment=1", http.StatusOK)
		if strings.Contains(body, "<html") || !strings.Contains(body, "<table") {
			t.Errorf("fragment of %s is not just the live table: %.200s", path, body)
		}
	}
}

func TestUIRetiredToggle(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	st := baseState()
	st.Builders = st.Builders[:1]
	st.Workers = st.Workers[:1]
	st.Schedulers[0].Builders = []string{"app"}
	e.apply(st)

	home := e.page("/", http.StatusOK)
	if strings.Contains(home, "/builders/docs") || !strings.Contains(home, `href="/?include=retired"`) {
		t.Errorf("home shows retired docs or lacks the toggle")
	}
	all := e.page("/?include=retired", http.StatusOK)
	if !strings.Contains(all, "/builders/docs") || !strings.Contains(all, "retired in generation 2") {
		t.Errorf("home with retired does not show docs as retired")
	}
	if !strings.Contains(all, "hide retired") {
		t.Error("home with retired lacks the toggle back")
	}
	if w := e.page("/workers", http.StatusOK); strings.Contains(w, ">w2<") {
		t.Error("workers page shows retired w2")
	}
	if w := e.page("/workers?include=retired", http.StatusOK); !strings.Contains(w, "w2") {
		t.Error("workers page with retired lacks w2")
	}
	// A retired builder's page is reachable from old links and says so,
	// without a force form.
	docs := e.page("/builders/docs", http.StatusOK)
	if !strings.Contains(docs, "retired in generation 2") || strings.Contains(docs, "Force a build") {
		t.Error("retired builder page does not say it is retired, or offers force")
	}
}

func TestUIForceFormCSRF(t *testing.T) {
	t.Parallel()
	form := "reason=from+a+test&properties=branch%3Dmain%0D%0Ajobs%3D4"
	cases := []struct {
		name   string
		token  string // admin token configured
		header map[string]string
		body   string
		status int
	}{
		{"no origin", "", nil, form, http.StatusForbidden},
		{"other origin", "", map[string]string{"Origin": "http://evil.example"}, form, http.StatusForbidden},
		{"cross site", "", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "SELF"}, form,
			http.StatusForbidden},
		{"other referer", "", map[string]string{"Referer": "http://evil.example/x"}, form,
			http.StatusForbidden},
		{"same origin", "", map[string]string{"Origin": "SELF"}, form, http.StatusSeeOther},
		{"same referer", "", map[string]string{"Referer": "SELF/builders/app"}, form, http.StatusSeeOther},
		{"fetch metadata", "", map[string]string{"Sec-Fetch-Site": "same-origin"}, form, http.StatusSeeOther},
		{"bad properties", "", map[string]string{"Origin": "SELF"}, "properties=novalue",
			http.StatusBadRequest},
		{"token missing", "tok", map[string]string{"Origin": "SELF"}, form, http.StatusUnauthorized},
		{"token wrong", "tok", map[string]string{"Origin": "SELF"}, form + "&token=nope",
			http.StatusUnauthorized},
		{"token right", "tok", map[string]string{"Origin": "SELF"}, form + "&token=tok", http.StatusSeeOther},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, func(cfg *Config) { cfg.AdminToken = c.token })
			h := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
			for k, v := range c.header {
				h[k] = strings.Replace(v, "SELF", e.srv.URL, 1)
			}
			r := e.do("POST", "/builders/app/force", c.body, h)
			if r.Status != c.status {
				t.Fatalf("status %d, want %d: %s", r.Status, c.status, r.Body)
			}
			sets, err := e.store.Buildsets(e.ctx, store.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if c.status != http.StatusSeeOther {
				if len(sets) != 0 {
					t.Fatalf("refused form still created %d buildsets", len(sets))
				}
				return
			}
			if len(sets) != 1 {
				t.Fatalf("%d buildsets, want 1", len(sets))
			}
			bs := sets[0]
			if loc := r.Header.Get("Location"); loc != fmt.Sprintf("/buildsets/%d", bs.ID) {
				t.Errorf("redirect to %q, want the buildset", loc)
			}
			if bs.Reason != "from a test" || bs.Properties["branch"] != "main" || bs.Properties["jobs"] != "4" {
				t.Errorf("buildset = %+v", bs)
			}
		})
	}
}

func TestUICancelAndRebuildForms(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.startBuild("app", nil)
	h := map[string]string{"Origin": e.srv.URL, "Content-Type": "application/x-www-form-urlencoded"}

	r := e.do("POST", fmt.Sprintf("/builds/%d/cancel", b.ID), "", h)
	if r.Status != http.StatusSeeOther || r.Header.Get("Location") != fmt.Sprintf("/builds/%d", b.ID) {
		t.Fatalf("cancel form: %d to %q", r.Status, r.Header.Get("Location"))
	}
	b.finish(build.Success)
	if r := e.do("POST", fmt.Sprintf("/builds/%d/cancel", b.ID), "", h); r.Status != http.StatusConflict {
		t.Errorf("cancel of a finished build: %d, want 409", r.Status)
	}
	r = e.do("POST", fmt.Sprintf("/builds/%d/rebuild", b.ID), "", h)
	if r.Status != http.StatusSeeOther || !strings.HasPrefix(r.Header.Get("Location"), "/buildsets/") {
		t.Fatalf("rebuild form: %d to %q", r.Status, r.Header.Get("Location"))
	}
	// The pending request of the rebuild can be cancelled from its page.
	page := e.page(r.Header.Get("Location"), http.StatusOK)
	m := regexp.MustCompile(`action="/requests/(\d+)/cancel"`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("buildset page offers no cancel: %s", page)
	}
	r = e.do("POST", "/requests/"+m[1]+"/cancel", "", h)
	if r.Status != http.StatusSeeOther {
		t.Fatalf("cancel request form: %d %s", r.Status, r.Body)
	}
	if page := e.page(r.Header.Get("Location"), http.StatusOK); !strings.Contains(page, "cancelled from the web UI") {
		t.Error("buildset page does not show the request cancelled with its reason")
	}
}

// TestUINoExternalURLs keeps every asset and page self-contained.
func TestUINoExternalURLs(t *testing.T) {
	t.Parallel()
	external := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}`)
	for _, fsys := range []fs.FS{templateFS, staticFS} {
		err := fs.WalkDir(fsys, ".", func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			data, err := fs.ReadFile(fsys, path)
			if err != nil {
				return err
			}
			if m := external.Find(data); m != nil {
				t.Errorf("%s refers to %s", path, m)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	e := newEnv(t)
	for _, asset := range []string{"/static/style.css", "/static/app.js", "/static/build.js"} {
		if r := e.do("GET", asset, "", nil); r.Status != http.StatusOK || len(r.Body) == 0 {
			t.Errorf("GET %s: %d", asset, r.Status)
		}
	}
	if r := e.do("GET", "/static/", "", nil); r.Status != http.StatusNotFound {
		t.Errorf("GET /static/: %d, want no listing", r.Status)
	}
}

func TestHealthzAndMetrics(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.startBuild("app", nil)
	for range 2 {
		if _, _, err := e.store.CreateBuildset(e.ctx, store.BuildsetInput{
			Reason: "wait", Scheduler: "force", Builders: []string{"docs"}}); err != nil {
			t.Fatal(err)
		}
	}
	if r := e.do("GET", "/healthz", "", nil); r.Status != http.StatusOK || string(r.Body) != "ok\n" {
		t.Errorf("healthz: %d %q", r.Status, r.Body)
	}
	m := string(e.do("GET", "/metrics", "", nil).Body)
	for _, want := range []string{
		"regent_builds_running 1",
		"regent_build_requests_pending 2",
		"regent_workers_connected 1",
		"regent_config_generation_active 1",
		"go_goroutines",
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	e.store.Close()
	if r := e.do("GET", "/healthz", "", nil); r.Status != http.StatusServiceUnavailable {
		t.Errorf("healthz with the database closed: %d", r.Status)
	}
}

func TestUIBuildPageShowsTailOfLargeLog(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.startBuild("app", nil)
	b.startStep(1, "noisy")
	line := strings.Repeat("x", 99) + "\n"
	for range 3000 { // 300 kB, more than the tail the page shows
		b.log(1, line)
	}
	b.startStep(2, "one long line")
	b.log(2, strings.Repeat("€", logTail/3+10)) // no newline; three bytes a character
	b.startStep(3, "small")
	b.log(3, "hello\n")

	body := e.page(fmt.Sprintf("/builds/%d", b.ID), http.StatusOK)
	m := regexp.MustCompile(`offsets=1:(\d+),2:(\d+),3:(\d+)`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("build page has no event offsets")
	}
	var from1, from2 int64
	fmt.Sscan(m[1], &from1)
	fmt.Sscan(m[2], &from2)
	size1, size2 := int64(3000*len(line)), int64(3*(logTail/3+10))
	if from1 <= 0 || size1-from1 > logTail || from1%int64(len(line)) != 0 {
		t.Errorf("step 1 shows from %d of %d, want a line start within the last %d bytes",
			from1, size1, logTail)
	}
	if from2 <= 0 || size2-from2 > logTail || from2%3 != 0 {
		t.Errorf("step 2 shows from %d of %d, want a character start within the last %d bytes",
			from2, size2, logTail)
	}
	if m[3] != "0" {
		t.Errorf("small step 3 shows from %s, want 0", m[3])
	}
	if n := strings.Count(body, `<p class="truncated">`); n != 2 {
		t.Errorf("%d steps say earlier output is hidden, want 2", n)
	}
}

func TestUIGenerationDiff(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	st := baseState()
	st.Builders = st.Builders[:1]
	st.Builders[0].Description = "the renamed application"
	st.Schedulers[0].Builders = []string{"app"}
	e.apply(st)

	for _, path := range []string{"/generations/2", "/generations/2?diff=1"} {
		page := e.page(path, http.StatusOK)
		for _, want := range []string{"Changes from generation 1", "- builder docs",
			"~ builder app: description", "Plan: 0 to add"} {
			if !strings.Contains(page, want) {
				t.Errorf("GET %s lacks %q", path, want)
			}
		}
	}
	if page := e.page("/generations/2?diff=2", http.StatusOK); !strings.Contains(page, "No changes.") {
		t.Error("a generation compared with itself shows changes")
	}
	page := e.page("/generations/1", http.StatusOK)
	for _, want := range []string{"Changes from no configuration", "&#43; builder app", "Plan: 5 to add"} {
		if !strings.Contains(page, want) {
			t.Errorf("the first generation's page lacks %q", want)
		}
	}
	e.page("/generations/2?diff=x", http.StatusBadRequest)
	e.page("/generations/2?diff=9", http.StatusNotFound)
}

func TestUIBuildsPaging(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for range defaultLimit + 1 {
		e.finishedBuild("app", build.Success, "")
	}
	e.finishedBuild("docs", build.Success, "")
	page := e.page("/builds?builder=app", http.StatusOK)
	if strings.Contains(page, "docs #") {
		t.Error("builds of app show a docs build")
	}
	m := regexp.MustCompile(`<a href="([^"]+)">older builds</a>`).FindStringSubmatch(page)
	if m == nil {
		t.Fatal("no link to older builds")
	}
	older := e.page("/builds"+strings.ReplaceAll(m[1], "&amp;", "&"), http.StatusOK)
	if !strings.Contains(older, "app #1</a>") || strings.Contains(older, "docs #") ||
		strings.Contains(older, "older builds") {
		t.Errorf("the older page is not the first build of app alone: %s", older)
	}
}

// The cluster page lists live masters and every clustered service with
// its owner, so an operator sees at a glance what runs where.
func TestClusterPage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	m, err := e.store.JoinMaster(ctx, store.MasterInfo{Name: "m-east", Host: "h1", Roles: []string{"web"}}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	page := e.page("/cluster", http.StatusOK)
	for _, want := range []string{"m-east", "h1", "Clustered services"} {
		if !strings.Contains(page, want) {
			t.Fatalf("cluster page lacks %q:\n%s", want, page)
		}
	}
	if err := e.store.EndMaster(ctx, m.ID, store.MasterStopped, "test"); err != nil {
		t.Fatal(err)
	}
	if page := e.page("/cluster", http.StatusOK); strings.Contains(page, "m-east") {
		t.Fatal("a stopped master is still listed")
	}
}

// Malformed ids and filters answer 400 with a page saying what was wrong,
// as the API does, rather than an unfiltered list or a missing page.
func TestUIRefusesMalformedIDsAndFilters(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.finishedBuild("app", build.Success, "")
	for path, says := range map[string]string{
		"/builds?state=bogus":       "state must be one of",
		"/builds?limit=abc":         "limit must be a whole number",
		"/builds?limit=0":           "limit must be a whole number",
		"/builds?before=x":          "before must be a positive id",
		"/changes?before=-3":        "before must be a positive id",
		"/changes?limit=9999":       "limit must be a whole number",
		"/generations?limit=x":      "limit must be a whole number",
		"/?include=everything":      "include may only be",
		"/workers?include=all":      "include may only be",
		"/builds/abc":               "is not a positive whole number",
		"/builds/0":                 "is not a positive whole number",
		"/buildsets/x":              "is not a positive whole number",
		"/generations/one":          "is not a positive whole number",
		"/generations/1?diff=first": "is not a generation number",
	} {
		if body := e.page(path, http.StatusBadRequest); !strings.Contains(html.UnescapeString(body), says) {
			t.Errorf("GET %s: the page does not say %q:\n%s", path, says, body)
		}
	}
	form := map[string]string{"Sec-Fetch-Site": "same-origin",
		"Content-Type": "application/x-www-form-urlencoded"}
	for _, path := range []string{"/builds/abc/cancel", "/builds/x/rebuild", "/requests/x/cancel"} {
		if r := e.do("POST", path, "", form); r.Status != http.StatusBadRequest {
			t.Errorf("POST %s: status %d, want 400", path, r.Status)
		}
	}

	// Good filters still filter, and the link to older builds keeps them.
	e.finishedBuild("app", build.Success, "")
	page := e.page("/builds?state=finished&limit=1", http.StatusOK)
	if strings.Count(page, "app #") != 1 || !strings.Contains(page, "limit=1") {
		t.Errorf("one build a page, and a link to the next one keeping the limit, expected:\n%s", page)
	}
}

// A lost build that its builder retries links forward to the retry, in
// the API and on its page, and the retry links back to it.
func TestLostBuildLinksToItsRetry(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	st := baseState()
	st.Builders[0].RetryLost = true
	e.apply(st)
	lost := e.startBuild("app", nil).ID
	if _, err := e.store.ExpireSessions(e.ctx, -1); err != nil {
		t.Fatal(err)
	}
	path := fmt.Sprintf("/api/v1/builds/%d", lost)
	if b := e.getJSON(path, http.StatusOK); b["retried_by"] != nil || b["result"] != build.Retry {
		t.Fatalf("lost build before its retry started: %v; want result retry, retried_by null", b)
	}
	if page := e.page(fmt.Sprintf("/builds/%d", lost), http.StatusOK); !strings.Contains(page,
		"a build not started yet") {
		t.Errorf("the lost build's page does not say its retry is yet to start:\n%s", page)
	}

	sess, _, err := e.store.OpenSession(e.ctx, "w1", "pw1", "m1", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	claimed, err := e.store.Claim(e.ctx, sess, "m1", 1)
	if err != nil || len(claimed) != 1 {
		t.Fatalf("claim the retry: %d builds, %v", len(claimed), err)
	}
	retry := claimed[0].Build.ID
	if got := num(t, e.getJSON(path, http.StatusOK), "retried_by"); got != retry {
		t.Fatalf("retried_by = %d, want %d", got, retry)
	}
	listed := items(t, e.getJSON("/api/v1/builds?builder=app", http.StatusOK))
	if len(listed) != 2 || num(t, listed[1], "retried_by") != retry || num(t, listed[0], "retry_of") != lost {
		t.Fatalf("listed builds %v; want %d retried by %d", listed, lost, retry)
	}
	link := fmt.Sprintf(`retried by</dt><dd><a href="/builds/%d">`, retry)
	if page := e.page(fmt.Sprintf("/builds/%d", lost), http.StatusOK); !strings.Contains(page, link) {
		t.Errorf("the lost build's page lacks %q:\n%s", link, page)
	}
	back := fmt.Sprintf(`retry of</dt><dd><a href="/builds/%d">`, lost)
	if page := e.page(fmt.Sprintf("/builds/%d", retry), http.StatusOK); !strings.Contains(page, back) {
		t.Errorf("the retry's page lacks %q", back)
	}
}
