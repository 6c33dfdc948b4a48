package config

import (
	"testing"
	"testing/fstest"

	"go.starlark.net/starlark"
)

// TestRewriteKeepsMeaning runs programs with and without the rewrite of
// guarded operations and checks that they compute the same values.
func TestRewriteKeepsMeaning(t *testing.T) {
	t.Parallel()
	programs := []string{
		`r = 1 + 2 * 3 % 4`,
		`r = "a" + "b" * 3 + "%s-%d" % ("x", 4) + "%(k)s" % {"k": "v"}`,
		`r = [1] + [2] * 2 + 2 * [3], (1,) + (2,) * 2, 3 * "ab"`,
		`r = ",".join(["a", "b"]) + "{}{x}".format(1, x = 2) + "aXa".replace("a", "bb")`,
		`r = "a b  c".split(), "a,b".split(","), "a,b,c".rsplit(",", 1), "a\nb".splitlines()`,
		`r = getattr("-", "join")(["a", "b"]), getattr(1, "nope", "default"), hasattr("x", "join")`,
		`def f():
    x = [1]
    y = x
    x += [2]
    x.extend([3])
    return y
r = f()`,
		`def f():
    s = "ab"
    s *= 2
    n = 10
    n %= 3
    d = {"k": [1]}
    d["k"] *= 2
    return s, n, d
r = f()`,
		`r = [a + b for a, b in [(1, 2), (3, 4)] if a * b > 1], {k: k * 2 for k in "ab".elems()}`,
		`g = lambda q = 1 + 2: q * 3
r = g(), g(q = 5)`,
		`def h(a, b = 2 * 3, *args, **kw):
    return a + b + len(args) + len(kw)
r = h(1), h(1, 2, 3, x = 4)`,
		`r = [1, 2, 3][1 + 0:2 * 1], "abc"[-1 + 0]`,
		`r = str([1, "a"]) + repr("x") + str(range(3))`,
		`r = sorted([3, 1, 2]), list((1, 2)), tuple([1]), dict(a = 1), set([1]), list(enumerate("ab".elems())), list(reversed([1, 2]))`,
		`r = 1 if 2 * 2 == 4 else 0`,
		`r = -(2 * 3), not 1 + 1`,
		`r = 5 // 2 - 1 | 4 & 6 ^ 1 << 2 >> 1`,
		`r = [x for x in range(10) if x % 2 == 0]`,
		`r = {"a": 1} | {"b": 2 + 0}`,
	}
	for _, src := range programs {
		plain, err := starlark.ExecFileOptions(fileOptions, &starlark.Thread{}, "regent.star", src, nil)
		if err != nil {
			t.Errorf("%s\nwithout the rewrite: %v", src, err)
			continue
		}
		ev := newEvaluator(fstest.MapFS{"regent.star": {Data: []byte(src)}}, Options{}.withDefaults())
		guarded, err := ev.exec("regent.star")
		if err != nil {
			t.Errorf("%s\nwith the rewrite: %v %v", src, err, ev.errs)
			continue
		}
		if got, want := guarded["r"].String(), plain["r"].String(); got != want {
			t.Errorf("%s\nwith the rewrite: %s\nwithout: %s", src, got, want)
		}
	}
}

// TestGetattrGuarded checks that getattr cannot fetch a method the rewrite
// guards without its guard.
func TestGetattrGuarded(t *testing.T) {
	t.Parallel()
	got := errorLines(t, map[string]string{"regent.star": `j = getattr("", "join")` + "\n" +
		`s = j(["x" * (1 << 20)] * 100)` + "\n"})
	eq(t, got, []string{"regent.star:2:5: join: this join would make a string of 100.0 MiB; " +
		"a configuration value may hold at most 16.0 MiB"})
}

// TestCommandName checks the step names derived from commands.
func TestCommandName(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"go build ./...":                     "go build",
		"go vet ./... && go test ./...":      "go vet",
		"make":                               "make",
		"make -j4 test":                      "make",
		"cd web && npm ci":                   "npm ci",
		"set -eu; ./scripts/test.sh --fast":  "test.sh",
		"GOOS=linux GOARCH=arm64 go build .": "go build",
		"/usr/bin/python3 -m pytest":         "python3",
		"  \n\n  cargo test --all\n":         "cargo test",
		"# comment\nmake check":              "make check",
		"":                                   "shell",
		"&& ;":                               "shell",
		"echo hello world":                   "echo hello",
		"(cd sub; make)":                     "make",
		"x" + string(make([]byte, 80)):       "shell",
	}
	for cmd, want := range tests {
		if got := commandName(cmd); got != want {
			t.Errorf("commandName(%q) = %q, want %q", cmd, got, want)
		}
	}
}
