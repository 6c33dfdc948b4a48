package config

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestHostileConfigurations evaluates configurations written to hurt the
// process evaluating them. Each must be refused within seconds, with an
// error saying where and what.
func TestHostileConfigurations(t *testing.T) {
	t.Parallel()
	outside := filepath.Join(t.TempDir(), "outside.star")
	if err := os.WriteFile(outside, []byte("secret = 'leaked'\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		files   map[string]string
		symlink [2]string // link name -> target, when set
		want    string    // the whole error
	}{
		{name: "endless loop", files: map[string]string{"regent.star": `def spin():
    for i in range(1000000):
        for j in range(1000000):
            pass
spin()
`}, want: "regent.star:3:9: evaluation stopped: the configuration ran for more than 10000000 steps; " +
			"look for a loop that does not end"},
		{name: "while loop", files: map[string]string{"regent.star": "def f():\n    while True:\n        pass\n"},
			want: "regent.star:2:5: this Starlark dialect does not support while loops"},
		{name: "recursion", files: map[string]string{"regent.star": "def f(n):\n    return f(n + 1)\nf(0)\n"},
			want: "regent.star:2:12: function f called recursively (recursion is not allowed in configurations; use a loop instead)"},
		{name: "mutual recursion", files: map[string]string{"regent.star": `def a(n):
    return b(n)
def b(n):
    return a(n)
a(0)
`}, want: "regent.star:4:12: function a called recursively (recursion is not allowed in configurations; use a loop instead)"},
		{name: "reading /etc/passwd", files: map[string]string{"regent.star": `load("/etc/passwd", "root")` + "\n"},
			want: `regent.star:1:1: cannot load /etc/passwd: absolute paths are not allowed: load files by their ` +
				`path relative to the configuration root, such as "lib/common.star"`},
		{name: "leaving the root", files: map[string]string{"regent.star": `load("../x.star", "x")` + "\n"},
			want: `regent.star:1:1: cannot load ../x.star: the path leaves the configuration root; only files under it can be loaded`},
		{name: "leaving the root from a subdirectory", files: map[string]string{"regent.star": `load("lib/../../x.star", "x")` + "\n"},
			want: `regent.star:1:1: cannot load lib/../../x.star: the path leaves the configuration root; only files under it can be loaded`},
		{name: "a link leading outside", files: map[string]string{"regent.star": `load("lib/evil.star", "secret")` + "\n"},
			symlink: [2]string{"lib/evil.star", outside},
			want: `regent.star:1:1: cannot load lib/evil.star: no file lib/evil.star under the configuration root ` +
				`(or it is a link leading outside it)`},
		{name: "a file that is not Starlark", files: map[string]string{"regent.star": `load("data.txt", "x")` + "\n", "data.txt": "x"},
			want: `regent.star:1:1: cannot load data.txt: only .star files can be loaded`},
		{name: "load cycle", files: map[string]string{
			"regent.star": `load("a.star", "a")` + "\n",
			"a.star":      `load("b.star", "b")` + "\na = 1\n",
			"b.star":      `load("a.star", "a")` + "\nb = 1\n",
		}, want: `b.star:1:1: cannot load a.star: load cycle: a.star -> b.star -> a.star`},
		{name: "a huge file", files: map[string]string{"regent.star": `load("big.star", "x")` + "\n",
			"big.star": strings.Repeat("# padding\n", 1<<20)},
			want: "regent.star:1:1: cannot load big.star: big.star is larger than 8.0 MiB, too large for a configuration file"},
		{name: "no file access", files: map[string]string{"regent.star": `x = open("/etc/passwd").read()` + "\n"},
			want: "regent.star:1:5: undefined: open"},
		{name: "100 MB string", files: map[string]string{"regent.star": `s = "x" * (100 << 20)` + "\n"},
			want: "regent.star:1:9: this repetition would make a string of 100.0 MiB; a configuration value may hold at most 16.0 MiB"},
		{name: "100 MB string the other way", files: map[string]string{"regent.star": `s = 104857600 * "x"` + "\n"},
			want: "regent.star:1:15: this repetition would make a string of 100.0 MiB; a configuration value may hold at most 16.0 MiB"},
		{name: "string doubling", files: map[string]string{"regent.star": `def grow():
    s = "x" * (1 << 20)
    for i in range(20):
        s = s + s
    return s
big = grow()
`}, want: "regent.star:4:15: this concatenation would make a string of 32.0 MiB; a configuration value may hold at most 16.0 MiB"},
		{name: "augmented repetition", files: map[string]string{"regent.star": "def f():\n    s = 'ab'\n    s *= 100000000\nf()\n"},
			want: "regent.star:3:7: this repetition would make a string of 190.7 MiB; a configuration value may hold at most 16.0 MiB"},
		{name: "join", files: map[string]string{"regent.star": `s = "".join(["x" * (1 << 20)] * 100)` + "\n"},
			want: "regent.star:1:5: join: this join would make a string of 100.0 MiB; a configuration value may hold at most 16.0 MiB"},
		{name: "format repeating an argument", files: map[string]string{"regent.star": `s = ("{0}" * 1000).format("x" * 100000)` + "\n"},
			want: "regent.star:1:5: format: this format would make a string of 95.4 MiB; a configuration value may hold at most 16.0 MiB"},
		{name: "percent formatting", files: map[string]string{"regent.star": `s = ("%s" * 20) % tuple(["x" * 1000000] * 20)` + "\n"},
			want: "regent.star:1:17: this % formatting would make a string of 19.1 MiB; a configuration value may hold at most 16.0 MiB"},
		{name: "replace", files: map[string]string{"regent.star": `s = ("x" * 1000000).replace("x", "yyyyyyyyyyyyyyyyyyyy")` + "\n"},
			want: "regent.star:1:5: replace: this replacement would make a string of 19.1 MiB; a configuration value may hold at most 16.0 MiB"},
		{name: "huge list", files: map[string]string{"regent.star": `l = [0] * (1 << 30)` + "\n"},
			want: "regent.star:1:9: this repetition would make 1073741824 elements; a configuration value may hold at most 1048576"},
		{name: "huge range", files: map[string]string{"regent.star": `l = list(range(1000000000))` + "\n"},
			want: "regent.star:1:10: range: this range would make 1000000000 elements; a configuration value may hold at most 1048576"},
		{name: "deep nesting", files: map[string]string{"regent.star": `def nest():
    x = []
    for i in range(100000):
        x = [x]
    return str(x)
s = nest()
`}, want: "regent.star:5:12: str: the value is nested more than 1000 levels deep"},
		{name: "exponential formatting", files: map[string]string{"regent.star": `def double():
    x = [1]
    for i in range(60):
        x = [x, x]
    return "%s" % (x,)
s = double()
`}, want: "regent.star:5:17: this % formatting would make a string of 16.0 MiB; a configuration value may hold at most 16.0 MiB"},
		{name: "huge field", files: map[string]string{"regent.star": `worker("w", "pw")
builder("b", ["w"], [step.shell("x")], description = "x" * (1 << 20))
`}, want: `regent.star:2:1: builder "b": description: the string holds 1.0 MiB, more than the 64.0 KiB allowed`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := writeFiles(t, tt.files)
			if tt.symlink[0] != "" {
				link := filepath.Join(dir, filepath.FromSlash(tt.symlink[0]))
				if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(tt.symlink[1], link); err != nil {
					t.Fatal(err)
				}
			}
			start := time.Now()
			st, err := Load(context.Background(), dir, Options{Timeout: time.Minute})
			if elapsed := time.Since(start); elapsed > 10*time.Second {
				t.Errorf("refused after %v, want within seconds", elapsed)
			}
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("got state %v and error %v, want Errors", st != nil, err)
			}
			if got := errs.Error(); !strings.HasSuffix(got, tt.want) || strings.Contains(got, "leaked") {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

// TestMemoryBudget checks that an evaluation accumulating memory in pieces
// each small enough to pass the guards is stopped by the allocation
// budget. It is not parallel: the budget is measured on the whole process,
// and the other tests' allocations would count against it.
func TestMemoryBudget(t *testing.T) {
	dir := writeFiles(t, map[string]string{"regent.star": `def hoard():
    l = []
    for i in range(10000):
        l.append("x" * (8 << 20))
    return len(l)
n = hoard()
`})
	start := time.Now()
	_, err := Load(context.Background(), dir, Options{})
	if time.Since(start) > 5*time.Second {
		t.Errorf("stopped after %v, want within seconds", time.Since(start))
	}
	// Where the loop is stopped varies, but it is on line 4.
	want := ": evaluation stopped: the evaluation holds more than 512.0 MiB of memory; " +
		"look for a value that grows without bound"
	if err == nil || !strings.HasPrefix(err.Error(), "regent.star:4:") || !strings.HasSuffix(err.Error(), want) {
		t.Fatalf("got %v, want regent.star:4:COL%s", err, want)
	}
}

// TestTimeout checks that an evaluation running past Options.Timeout is
// stopped at its position.
func TestTimeout(t *testing.T) {
	t.Parallel()
	dir := writeFiles(t, map[string]string{"regent.star": "def spin():\n    for i in range(1000000):\n" +
		"        for j in range(1000000):\n            pass\nspin()\n"})
	start := time.Now()
	_, err := Load(context.Background(), dir, Options{Timeout: 100 * time.Millisecond, MaxSteps: 1 << 62})
	if time.Since(start) > 3*time.Second {
		t.Errorf("stopped after %v, want about 100ms", time.Since(start))
	}
	want := "regent.star:3:9: evaluation stopped: the evaluation took longer than 100ms"
	if err == nil || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
}

// TestCancel checks that a cancelled context stops the evaluation with the
// context's error, not a configuration error.
func TestCancel(t *testing.T) {
	t.Parallel()
	dir := writeFiles(t, map[string]string{"regent.star": "def spin():\n    for i in range(1000000):\n" +
		"        for j in range(1000000):\n            pass\nspin()\n"})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := Load(ctx, dir, Options{MaxSteps: 1 << 62})
	var errs Errors
	if !errors.Is(err, context.DeadlineExceeded) || errors.As(err, &errs) {
		t.Fatalf("got %v, want a wrapped context.DeadlineExceeded", err)
	}
}

// TestHostileStates evaluates configurations that are quick to evaluate
// but would make a desired state, or a list of problems, too large to
// check quickly.
func TestHostileStates(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, src, want string
	}{
		{"300,000 unknown workers", `builder("b", ["x%d" % i for i in range(300000)], [step.shell("x")])` + "\n",
			"regent.star: and 299000 more problems, not shown"},
		{"a million steps in a builder", `worker("w", "pw")` + "\n" +
			`builder("b", ["w"], [step.shell("make")] * 1000000)` + "\n",
			`regent.star:2:1: builder "b": steps: 1000000 steps; a builder may have at most 10000`},
		{"many builders sharing many steps", `worker("w", "pw")
s = [step.shell("make")] * 10000
for i in range(200):
    builder("b%d" % i, ["w"], s)
`, "regent.star:4:5: the builders hold more than 100000 steps in all; look for a loop that does not end"},
		{"tags selecting too many workers", `for i in range(3000):
    worker("w%d" % i, "pw", tags = ["t"])
for i in range(1000):
    builder("b%d" % i, ["tag:t"], [step.shell("x")])
`, `builder "b349": workers: worker tags select more than 1048576 workers in all the builders`},
		{"too many objects", `def f():
    for i in range(300000):
        lock("l%d" % i)
f()
`, "regent.star:3:9: more than 200000 objects declared; look for a loop that does not end"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// The timeout is raised so that a slow machine shows the
			// limit under test rather than the timeout.
			start := time.Now()
			dir := writeFiles(t, map[string]string{"regent.star": tt.src})
			_, err := Load(context.Background(), dir, Options{Timeout: time.Minute})
			if elapsed := time.Since(start); elapsed > 30*time.Second {
				t.Errorf("refused after %v, want within seconds", elapsed)
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				msg := "<nil>"
				if err != nil {
					msg = err.Error()[:min(len(err.Error()), 2000)]
				}
				t.Fatalf("got %s\nwant it to contain %s", msg, tt.want)
			}
		})
	}
}

// TestIsolation checks what only the evaluator process can stop: a single
// built-in call that would run for ages, here hashing a tuple whose parts
// are shared sixty times over.
func TestIsolation(t *testing.T) {
	t.Parallel()
	dir := writeFiles(t, map[string]string{"regent.star": `def bomb():
    t = ()
    for i in range(60):
        t = (t, t)
    return {t: 1}
x = bomb()
`})
	start := time.Now()
	_, err := Load(context.Background(), dir, Options{Timeout: time.Second})
	if elapsed := time.Since(start); elapsed > 10*time.Second {
		t.Errorf("stopped after %v, want within seconds", elapsed)
	}
	want := "regent.star: evaluation stopped: the evaluation took longer than 1s"
	if err == nil || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
}

// TestIsolatedMatchesInProcess checks that both ways of evaluating give the
// same state, passwords included.
func TestIsolatedMatchesInProcess(t *testing.T) {
	t.Parallel()
	dirs, _ := filepath.Glob("testdata/examples/*")
	for _, dir := range dirs {
		child, err := Load(context.Background(), dir, Options{Secrets: exampleSecrets})
		if err != nil {
			t.Fatal(err)
		}
		here, err := Load(context.Background(), dir, Options{Secrets: exampleSecrets, InProcess: true})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(child, here) {
			t.Errorf("%s: the evaluator process and this one give different states", dir)
		}
		if here.Workers[0].Password == "" {
			t.Errorf("%s: no password", dir)
		}
	}
}
