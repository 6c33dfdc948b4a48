package schedule

import (
	"testing"

	"github.com/regent-ci/regent/internal/config"
	"github.com/regent-ci/regent/internal/store"
)

func TestFilterMatches(t *testing.T) {
	t.Parallel()
	branch := config.Scheduler{Kind: config.SchedulerBranch, Repo: "app", Branch: "main"}
	any := config.Scheduler{Kind: config.SchedulerAnyBranch, Repo: "app"}
	pattern := any
	pattern.BranchPattern = `release/.*|refs/tags/v.*|refs/pull/\d+/head`
	paths := branch
	paths.Paths = []string{"*.go", "docs/", "build/Makefile"}
	authors := branch
	authors.Authors = []string{"ada@EXAMPLE.test"}
	ch := func(branch string, files ...string) store.Change {
		return store.Change{Repository: "app", Branch: branch, Author: "Ada <ada@example.test>", Files: files}
	}
	pr := ch("refs/pull/3/head")
	pr.Category = store.CategoryPullRequest
	cases := []struct {
		name string
		sc   config.Scheduler
		c    store.Change
		want bool
	}{
		{"branch", branch, ch("main"), true},
		{"other branch", branch, ch("dev"), false},
		{"other repository", branch, store.Change{Repository: "lib", Branch: "main"}, false},
		{"any branch", any, ch("feature/x"), true},
		{"any branch skips tags", any, ch("refs/tags/v1"), false},
		{"any branch skips pull requests", any, pr, false},
		{"pattern branch", pattern, ch("release/1.2"), true},
		{"pattern is anchored", pattern, ch("old-release/1.2"), false},
		{"pattern tag", pattern, ch("refs/tags/v1.0"), true},
		{"pattern pull request", pattern, pr, true},
		{"go file in a directory", paths, ch("main", "cmd/regent/main.go"), true},
		{"directory prefix", paths, ch("main", "docs/a/b.md"), true},
		{"full path", paths, ch("main", "build/Makefile"), true},
		{"no matching file", paths, ch("main", "README.md", "web/x.js"), false},
		{"no files", paths, ch("main"), false},
		{"pull request files unknown", func() config.Scheduler { s := pattern; s.Paths = paths.Paths; return s }(), pr, true},
		{"author in any case", authors, ch("main"), true},
		{"other author", authors, store.Change{Repository: "app", Branch: "main", Author: "Grace <g@example.test>"}, false},
	}
	for _, c := range cases {
		if got := Matches(c.sc, c.c); got != c.want {
			t.Errorf("%s: Matches = %v, want %v", c.name, got, c.want)
		}
	}
}

// A push of many commits at once (the poller caps them at its limit)
// makes one buildset per change, created together, so a builder that
// collapses requests has one pending request left: one build per builder.
// Part of must-show 2, at the scheduler's level.
func TestManyChangesAtOnceBuildOncePerCollapsingBuilder(t *testing.T) {
	t.Parallel()
	st := &config.State{Schedulers: []config.Scheduler{
		{Name: "on-main", Kind: config.SchedulerBranch, Repo: "app", Branch: "main", Builders: []string{"unit", "lint"}},
		{Name: "any", Kind: config.SchedulerAnyBranch, Repo: "app", Builders: []string{"deploy"}},
	}}
	e := newEnv(t, st)
	st.Builders[1].CollapseRequests = true // lint
	st.Builders[2].CollapseRequests = true // unit
	if _, err := e.store.Apply(e.ctx, st, "test", "tester"); err != nil {
		t.Fatal(err)
	}
	s := e.service(false)
	e.runOnce(s) // no change yet
	main := e.record("main", make([][]string, 100)...)
	e.record("dev", nil, nil)
	e.runOnce(s)
	e.runOnce(s)

	sets := e.buildsets("on-main")
	if len(sets) != 100 || *sets[99].ChangeID != main[99].ID ||
		sets[99].Properties["revision"] != main[99].Revision || sets[99].Properties["branch"] != "main" ||
		sets[99].Properties["repository"] != "https://git.example.test/app.git" {
		t.Fatalf("on-main made %d buildsets, want one per change", len(sets))
	}
	for _, b := range []string{"unit", "lint"} {
		reqs, err := e.store.Requests(e.ctx, store.RequestFilter{Builder: b, State: store.RequestPending})
		if err != nil || len(reqs) != 1 || reqs[0].BuildsetID != sets[99].ID {
			t.Fatalf("%s pending requests = %+v, %v; want only the newest change's", b, reqs, err)
		}
	}
	if n := len(e.buildsets("any")); n != 102 {
		t.Fatalf("any-branch buildsets = %d, want 102", n)
	}

	// Masters running the same scheduler at once make nothing twice.
	e.record("main", nil)
	other := e.service(false)
	done := make(chan error)
	go func() { done <- other.RunOnce(e.ctx) }()
	e.runOnce(s)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := len(e.buildsets("on-main")); n != 101 {
		t.Fatalf("on-main buildsets = %d after one more change, want 101", n)
	}
}

func TestSchedulerFiltersAndProperties(t *testing.T) {
	t.Parallel()
	e := newEnv(t, &config.State{Schedulers: []config.Scheduler{
		{Name: "docs", Kind: config.SchedulerBranch, Repo: "app", Branch: "main", Builders: []string{"unit"},
			Paths: []string{"docs/"}, Properties: map[string]string{"suite": "docs", "revision": "not this"}},
	}})
	s := e.service(false)
	e.runOnce(s)
	e.record("main", []string{"src/a.go"})
	e.runOnce(s)
	if n := len(e.buildsets("docs")); n != 0 {
		t.Fatalf("a change outside docs/ made %d buildsets", n)
	}
	c := e.record("main", []string{"docs/index.md"})[0]
	e.runOnce(s)
	sets := e.buildsets("docs")
	if len(sets) != 1 {
		t.Fatalf("buildsets = %+v", sets)
	}
	p := sets[0].Properties
	if p["suite"] != "docs" || p["revision"] != c.Revision || p["scheduler"] != "docs" ||
		p["author"] != "Ada <ada@example.test>" {
		t.Fatalf("properties = %v", p)
	}
}
