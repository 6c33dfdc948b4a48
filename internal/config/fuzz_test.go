package config

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"
)

// fuzzHelpers is a helper file the fuzzed configurations may load.
const fuzzHelpers = `def go_builder(name, workers):
    return builder(name, workers, [step.shell("go test ./...")])
w = worker("helper-w", "pw", tags = ["t"])
`

// FuzzLoad evaluates and validates arbitrary regent.star text: it must
// never panic, and must either refuse the text with positioned errors or
// give a well-formed state. Its seed corpus is testdata/fuzz/FuzzLoad; run
// it with go test -run='^$' -fuzz=FuzzLoad -fuzztime=60000x
// (make test does; see FUZZTIME in the Makefile for why a count).
func FuzzLoad(f *testing.F) {
	f.Add(`worker("w", "pw")` + "\n")
	f.Add(`load("lib/helpers.star", "go_builder", "w")` + "\n" + `go_builder("b", [w])` + "\n")
	f.Add(`s = "x" * 10` + "\n" + `t = ("%s" % s).replace("x", "yy").split("y")` + "\n")
	f.Fuzz(func(t *testing.T, src string) {
		fsys := fstest.MapFS{
			"regent.star":      {Data: []byte(src)},
			"lib/helpers.star": {Data: []byte(fuzzHelpers)},
		}
		opts := Options{Secrets: MapSecrets{"pw": "s3cr3t-v4lue"}, MaxSteps: 100_000, Timeout: 5 * time.Second}
		start := time.Now()
		st, err := LoadFS(context.Background(), fsys, opts)
		if elapsed := time.Since(start); elapsed > opts.Timeout+3*time.Second {
			t.Fatalf("Load took %v, more than its timeout of %v", elapsed, opts.Timeout)
		}
		if err != nil {
			var errs Errors
			if errors.Is(err, errInternal) || !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("got %v, want Errors", err)
			}
			for _, e := range errs {
				leaked := strings.Contains(e.Error(), "s3cr3t-v4lue") && !strings.Contains(src, "s3cr3t-v4lue")
				if e.Pos.File == "" || e.Msg == "" || leaked {
					t.Fatalf("malformed error %q", e.Error())
				}
			}
			return
		}
		checkState(t, st)
		if elapsed := time.Since(start); elapsed > opts.Timeout+3*time.Second {
			t.Fatalf("Load and the checks of its state took %v", elapsed)
		}
	})
}

// checkState checks the invariants of a state given by Load.
func checkState(t *testing.T, st *State) {
	t.Helper()
	names := func(kind string, n int, name func(int) string) {
		for i := 1; i < n; i++ {
			if name(i-1) >= name(i) {
				t.Fatalf("%s names not sorted and unique: %q, %q", kind, name(i-1), name(i))
			}
		}
	}
	names("repo", len(st.Repos), func(i int) string { return st.Repos[i].Name })
	names("worker", len(st.Workers), func(i int) string { return st.Workers[i].Name })
	names("builder", len(st.Builders), func(i int) string { return st.Builders[i].Name })
	names("scheduler", len(st.Schedulers), func(i int) string { return st.Schedulers[i].Name })
	names("lock", len(st.Locks), func(i int) string { return st.Locks[i].Name })
	for _, b := range st.Builders {
		if len(b.Workers) == 0 || len(b.Steps) == 0 {
			t.Fatalf("builder %q has no workers or no steps", b.Name)
		}
		for _, w := range b.Workers {
			if !slices.ContainsFunc(st.Workers, func(x Worker) bool { return x.Name == w }) {
				t.Fatalf("builder %q names unknown worker %q", b.Name, w)
			}
		}
	}
	raw, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var back State
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	if ContentHash(&back, nil) != ContentHash(st, nil) {
		t.Fatal("the content hash changed through JSON")
	}
	if p := Diff(&back, st); !p.Empty() {
		t.Fatalf("a state differs from itself through JSON: %s", p)
	}
}
