package config

import (
	"encoding/json"
	"testing"
)

// TestDiff compares pairs of configurations.
func TestDiff(t *testing.T) {
	t.Parallel()
	base := prelude + `lock("db")
builder("unit", [w1], [step.git(app), step.shell("make test")], env = {"A": "1"})
builder("lint", [w1], [step.shell("make lint")])
scheduler.branch("main", app, "main", ["unit", "lint"])
`
	tests := []struct {
		name     string
		old, new string
		opts     DiffOptions
		want     string
	}{
		{"same", base, base, DiffOptions{}, "No changes.\n"},
		{"only positions and comments", base, "# a comment\n\n" + base, DiffOptions{}, "No changes.\n"},
		{"empty to something", "", prelude, DiffOptions{}, "+ git_repo app\n+ worker w1\nPlan: 2 to add, 0 to change, 0 to rename, 0 to remove.\n"},
		{"add and remove of each kind", base, prelude + `worker("w2", "pw")
lock("pool", max_holders = 2)
builder("unit", [w1], [step.git(app), step.shell("make test")], env = {"A": "1"})
scheduler.force("force", ["unit"])
`, DiffOptions{}, `+ worker w2
+ lock pool
- lock db
- builder lint
+ scheduler force
- scheduler main
Plan: 3 to add, 0 to change, 0 to rename, 3 to remove.
`},
		{"changed fields", base, prelude + `lock("db", max_holders = 2)
builder("unit", [w1], [step.git(app), step.shell("make test", timeout = "1h")], env = {"A": "2"}, tags = ["x"])
builder("lint", [w1], [step.shell("make lint")])
scheduler.branch("main", app, "main", ["unit"])
worker("w2", "pw")
`, DiffOptions{}, `+ worker w2
~ lock db: max_holders
~ builder unit: steps, env, tags
~ scheduler main: builders
Plan: 1 to add, 3 to change, 0 to rename, 0 to remove.
`},
		// Field case C01: a rename declared with previous_names keeps the
		// history under the new name.
		{"rename", base, prelude + `lock("db")
builder("unit-tests", [w1], [step.git(app), step.shell("make test")], env = {"A": "1"}, previous_names = ["unit"])
builder("lint", [w1], [step.shell("make lint")])
scheduler.branch("main", app, "main", ["unit-tests", "lint"])
`, DiffOptions{}, `> builder unit -> unit-tests
~ scheduler main: builders
Plan: 0 to add, 1 to change, 1 to rename, 0 to remove.
`},
		{"rename with changes", base, prelude + `lock("db")
builder("unit-tests", [w1], [step.shell("make test")], previous_names = ["older", "unit"])
builder("lint", [w1], [step.shell("make lint")])
scheduler.branch("main", app, "main", ["unit-tests", "lint"])
`, DiffOptions{}, `> builder unit -> unit-tests: steps, env
~ scheduler main: builders
Plan: 0 to add, 1 to change, 1 to rename, 0 to remove.
`},
		// The neighbour of C01: without previous_names, the old builder is
		// retired and a fresh one created.
		{"rename without previous_names", base, prelude + `lock("db")
builder("unit-tests", [w1], [step.git(app), step.shell("make test")], env = {"A": "1"})
builder("lint", [w1], [step.shell("make lint")])
scheduler.branch("main", app, "main", ["unit-tests", "lint"])
`, DiffOptions{}, `+ builder unit-tests
- builder unit
~ scheduler main: builders
Plan: 1 to add, 1 to change, 0 to rename, 1 to remove.
`},
		{"previous name of a builder still present before", base, prelude + `lock("db")
builder("lint", [w1], [step.git(app), step.shell("make test")], env = {"A": "1"}, previous_names = ["unit"])
scheduler.branch("main", app, "main", ["lint"])
`, DiffOptions{}, `~ builder lint: steps, env, previous_names
- builder unit
~ scheduler main: builders
Plan: 0 to add, 2 to change, 0 to rename, 1 to remove.
`},
		{"password seen by the store", base, base, DiffOptions{PasswordChanged: func(w string) bool { return w == "w1" }},
			"~ worker w1: password\nPlan: 0 to add, 1 to change, 0 to rename, 0 to remove.\n"},
		// A previous name that the store has retired: the history is
		// brought back under the new name.
		{"previous name of a retired builder", prelude + `builder("unit", [w1], [step.shell("make test")])
`, prelude + `builder("unit", [w1], [step.shell("make test")])
builder("deploy2", [w1], [step.shell("make deploy")], previous_names = ["gone", "deploy"])
`, DiffOptions{Revived: map[string]string{"deploy2": "deploy"}}, `> builder deploy (retired) -> deploy2
Plan: 0 to add, 0 to change, 1 to rename, 0 to remove.
`},
		// A previous name still active wins over a retired one.
		{"previous name active and another retired", base, prelude + `lock("db")
builder("unit-tests", [w1], [step.git(app), step.shell("make test")], env = {"A": "1"}, previous_names = ["old", "unit"])
builder("lint", [w1], [step.shell("make lint")])
scheduler.branch("main", app, "main", ["unit-tests", "lint"])
`, DiffOptions{Revived: map[string]string{"unit-tests": "old"}}, `> builder unit -> unit-tests
~ scheduler main: builders
Plan: 0 to add, 1 to change, 1 to rename, 0 to remove.
`},
		{"password in both states", base, `app = git_repo("app", "https://example.com/app.git")
w1 = worker("w1", "new password")
` + base[len(prelude):], DiffOptions{}, "~ worker w1: password\nPlan: 0 to add, 1 to change, 0 to rename, 0 to remove.\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			old, new := mustLoad(t, tt.old), mustLoad(t, tt.new)
			p := DiffWith(old, new, tt.opts)
			if got := p.String(); got != tt.want {
				t.Errorf("got:\n%swant:\n%s", got, tt.want)
			}
			if p.Empty() != (tt.want == "No changes.\n") {
				t.Errorf("Empty() = %v", p.Empty())
			}
		})
	}
}

// TestDiffStoredState diffs a state read back from JSON, as the store
// keeps it (no passwords, empty lists possibly null), against the state it
// came from: nothing changed.
func TestDiffStoredState(t *testing.T) {
	t.Parallel()
	st := mustLoad(t, prelude+`builder("b", [w1], [step.shell("make", env = {"A": "1"})], properties = {"p": 1})
scheduler.force("f", ["b"], parameters = [param.bool("clean")])
`)
	raw, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var stored State
	if err := json.Unmarshal(raw, &stored); err != nil {
		t.Fatal(err)
	}
	stored.Builders[0].Tags = []string{} // an empty list where the new state has none
	if p := Diff(&stored, st); !p.Empty() {
		t.Fatalf("got plan %s, want none", p)
	}
	eq(t, Diff(nil, nil).Empty(), true)
}

// TestDiffLists checks the lists of a plan, which apply works from.
func TestDiffLists(t *testing.T) {
	t.Parallel()
	old := mustLoad(t, prelude+`builder("a", [w1], [step.shell("x")])
builder("b", [w1], [step.shell("x")])
`)
	new := mustLoad(t, prelude+`builder("a2", [w1], [step.shell("x")], previous_names = ["a"])
builder("c", [w1], [step.shell("y")])
`)
	p := Diff(old, new)
	eq(t, p.Builders, KindPlan{Added: []string{"c"}, Removed: []string{"b"},
		Renamed: []Rename{{From: "a", To: "a2"}}})
	eq(t, p.Workers, KindPlan{})
}
