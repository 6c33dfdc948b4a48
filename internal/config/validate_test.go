package config

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestValidationErrors checks each kind of problem a configuration can
// have, with its exact position and message.
func TestValidationErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{"syntax error", map[string]string{"regent.star": "worker(\"w\", \"pw\"\nx = 1\n"},
			[]string{`regent.star:2:1: got identifier, want ','`}},
		{"syntax error in a loaded file", map[string]string{
			"regent.star": "load(\"lib/x.star\", \"f\")\n",
			"lib/x.star":  "def f(:\n",
		}, []string{`lib/x.star:1:7: got ':', want ')'`}},
		{"undefined names, all of them", map[string]string{"regent.star": "wrker(\"w\", \"pw\")\nbuilderr(\"b\")\n"},
			[]string{
				`regent.star:1:1: undefined: wrker`,
				`regent.star:2:1: undefined: builderr`,
			}},
		{"runtime error", map[string]string{"regent.star": "x = 1\ny = x + \"a\"\n"},
			[]string{`regent.star:2:7: unknown binary op: int + string`}},
		{"runtime error in a loaded file", map[string]string{
			"regent.star": "load(\"lib.star\", \"f\")\nf()\n",
			"lib.star":    "def f():\n    fail(\"broken helper\")\n",
		}, []string{`lib.star:2:5: fail: broken helper`}},
		{"types", map[string]string{"regent.star": `worker("w", 42, max_builds = "2", tags = "linux")
git_repo("app", ["url"], poll_interval = 60)
`}, []string{
			`regent.star:1:1: worker "w": password: want a string or secret("name"), got int`,
			`regent.star:1:1: worker "w": max_builds: want an int, got string`,
			`regent.star:1:1: worker "w": tags: want a list, got string`,
			`regent.star:2:1: git_repo "app": url: want a string, got list`,
			`regent.star:2:1: git_repo "app": poll_interval: want a duration string such as "90s", got int`,
		}},
		{"arguments", map[string]string{"regent.star": `worker("w")
worker("v", "pw", colour = "blue")
`}, []string{
			`regent.star:1:1: worker "w": missing argument for password`,
			`regent.star:2:1: worker "v": unexpected keyword argument "colour"`,
		}},
		{"duplicates", map[string]string{"regent.star": prelude + `worker("w1", "other")
lock("l")
lock("l")
`}, []string{
			`regent.star:3:1: worker "w1": declared twice; the first declaration is at regent.star:2:6`,
			`regent.star:5:1: lock "l": declared twice; the first declaration is at regent.star:4:1`,
		}},
		{"names", map[string]string{"regent.star": `worker("bad name", "pw")
worker("-w", "pw", tags = ["ok", "not ok"])
`}, []string{
			`regent.star:1:1: worker "bad name": name: "bad name" is not a valid name: use 1 to 100 letters, digits, '.', '_' or '-', starting with a letter or digit`,
			`regent.star:2:1: worker "-w": name: "-w" is not a valid name: use 1 to 100 letters, digits, '.', '_' or '-', starting with a letter or digit`,
			`regent.star:2:1: worker "-w": tags: "not ok" is not a valid name: use 1 to 100 letters, digits, '.', '_' or '-', starting with a letter or digit`,
		}},
		{"unknown references", map[string]string{"regent.star": prelude + `builder("b", ["w2", "tag:gpu"], [step.git("ap"), step.shell("make", locks = ["l"])], locks = ["m"])
scheduler.branch("s", "repo", "main", ["b", "c"])
scheduler.dependent("d", upstream = ["x"], builders = ["b"])
builder("t", [w1], [step.trigger("nope")])
`}, []string{
			`regent.star:3:1: builder "b": workers: unknown worker "w2" (did you mean "w1"?)`,
			`regent.star:3:1: builder "b": workers: no worker has the tag "gpu"`,
			`regent.star:3:1: builder "b": locks: unknown lock "m"`,
			`regent.star:3:34: builder "b": step "git": unknown git_repo "ap" (did you mean "app"?)`,
			`regent.star:3:50: builder "b": step "make": unknown lock "l"`,
			`regent.star:4:1: scheduler "s": builders: unknown builder "c" (did you mean "b"?)`,
			`regent.star:4:1: scheduler "s": repo: unknown git_repo "repo"`,
			`regent.star:5:1: scheduler "d": upstream: unknown builder "x" (did you mean "b"?)`,
			`regent.star:6:21: builder "t": step "trigger": unknown scheduler "nope"`,
		}},
		{"kinds of references", map[string]string{"regent.star": prelude + `builder("b", [app], [step.git(w1)])
builder("c", [w1], [step.trigger("s")])
scheduler.force("s", ["b"])
`}, []string{
			`regent.star:3:1: builder "b": workers: want a worker or its name, got git_repo("app")`,
			`regent.star:3:22: step "git": repo: want a git_repo or its name, got worker("w1")`,
			`regent.star:4:21: builder "c": step "trigger": scheduler "s" is a force scheduler; only schedulers made by scheduler.triggerable can be triggered`,
		}},
		{"empty builders", map[string]string{"regent.star": prelude + `builder("a", [], [step.shell("x")])
builder("b", [w1], [])
builder("c", [w1], ["make"])
`}, []string{
			`regent.star:3:1: builder "a": workers: the builder has no workers; list workers, their names or "tag:NAME"`,
			`regent.star:4:1: builder "b": steps: the builder has no steps`,
			`regent.star:5:1: builder "c": steps: want steps made by step.git, step.shell or step.trigger, got string`,
		}},
		{"durations", map[string]string{"regent.star": prelude + `git_repo("r", "https://h/r.git", poll_interval = "10ms")
builder("b", [w1], [step.shell("x", timeout = "ten minutes", no_output_timeout = "-1s")])
scheduler.periodic("p", ["b"], interval = "1d")
`}, []string{
			`regent.star:3:1: git_repo "r": poll_interval: 10ms is too short; want at least 1s`,
			`regent.star:4:21: step "x": timeout: "ten minutes" is not a duration; write it in Go syntax, such as "90s", "10m" or "1h30m"`,
			`regent.star:4:21: step "x": no_output_timeout: -1s is too short; want at least 1s`,
			`regent.star:5:1: scheduler "p": interval: "1d" is not a duration; write it in Go syntax, such as "90s", "10m" or "1h30m"`,
		}},
		{"cron and time zones", map[string]string{"regent.star": prelude + `builder("b", [w1], [step.shell("x")])
scheduler.cron("c1", ["b"], cron = "61 * * * *")
scheduler.cron("c2", ["b"], cron = "0 3 * * *", timezone = "Mars/Olympus")
scheduler.cron("c3", ["b"], cron = "@every 5m")
scheduler.cron("c4", ["b"], cron = "0 3 * * *", timezone = "Local")
`}, []string{
			`regent.star:4:1: scheduler "c1": cron: "61 * * * *" is not a five-field cron expression (minute hour day-of-month month day-of-week, such as "30 2 * * 1-5"): end of range (61) above maximum (59): 61`,
			`regent.star:5:1: scheduler "c2": timezone: "Mars/Olympus" is not a known time zone; use an IANA name such as "Europe/Paris" or "UTC"`,
			`regent.star:6:1: scheduler "c3": cron: "@every 5m": use the timezone argument for time zones and scheduler.periodic for intervals`,
			`regent.star:7:1: scheduler "c4": timezone: "Local" is not a time zone name; use an IANA name such as "Europe/Paris" or "UTC"`,
		}},
		{"renames", map[string]string{"regent.star": prelude + `builder("a", [w1], [step.shell("x")], previous_names = ["a"])
builder("b", [w1], [step.shell("x")], previous_names = ["a", "old"])
builder("c", [w1], [step.shell("x")], previous_names = ["old"])
`}, []string{
			`regent.star:3:1: builder "a": previous_names: lists the builder's own name`,
			`regent.star:4:1: builder "b": previous_names: "a" is the name of the builder declared at regent.star:3:1; only a name no longer in use can be taken over`,
			`regent.star:5:1: builder "c": previous_names: "old" is already claimed by builder "b"; a history can move to one builder only`,
		}},
		{"trigger cycles", map[string]string{"regent.star": prelude + `scheduler.triggerable("ta", ["a"])
scheduler.triggerable("tb", ["b"])
builder("a", [w1], [step.shell("x"), step.trigger("tb")])
builder("b", [w1], [step.trigger("ta", wait = True)])
builder("self", [w1], [step.trigger("tself")])
scheduler.triggerable("tself", ["self"])
builder("c", [w1], [step.shell("x")])
builder("d", [w1], [step.shell("x")])
scheduler.dependent("dd", upstream = ["c"], builders = ["d"])
scheduler.dependent("dc", upstream = ["d"], builders = ["c"])
`}, []string{
			`regent.star:5:38: builder "a": builds would start each other without end: a -> b (step "trigger" triggers "tb") -> a (step "trigger" triggers "ta")`,
			`regent.star:6:21: builder "b": step "trigger" waits for builder "a", which only worker "w1" runs, with one build at a time: a build of "b" running there would wait for ever; give "a" more workers or slots, or do not wait`,
			`regent.star:7:24: builder "self": builds would start each other without end: self -> self (step "trigger" triggers "tself")`,
			`regent.star:11:1: builder "c": builds would start each other without end: c -> d (dependent scheduler "dd") -> c (dependent scheduler "dc")`,
		}},
		{"locks taken in an order that can deadlock", map[string]string{"regent.star": prelude + `lock("a")
lock("b")
lock("c", max_holders = 2)
builder("x", [w1], [step.shell("one", locks = ["b"])], locks = ["a"])
builder("y", [w1], [step.shell("two", locks = ["a"])], locks = ["b"])
builder("parent", [w1], [step.trigger("tc", wait = True)], locks = ["c"])
builder("child", [w1, worker("w2", "pw")], [step.shell("three", locks = ["c"])])
scheduler.triggerable("tc", ["child"])
builder("fine1", [w1], [step.shell("four", locks = ["a", "c"])], locks = ["a"])
builder("fine2", [w1], [step.trigger("tf", wait = False)], locks = ["c"])
scheduler.triggerable("tf", ["child"])
`}, []string{
			`regent.star:6:21: builder "x": locks can deadlock: builds could each hold a lock the other waits for: lock "a" -> "b" (builder "x" holds "a" and takes it in step "one") -> "a" (builder "y" holds "b" and takes it in step "two"); take these locks in one order everywhere, or all at the builder`,
			`regent.star:8:26: builder "parent": locks can deadlock: builds could each hold a lock the other waits for: lock "c" -> "c" (builder "parent" holds "c" and waits in step "trigger" for builds that take it); take these locks in one order everywhere, or all at the builder`,
		}},
		{"a waiting trigger whose child can only run in the parent's slot", map[string]string{"regent.star": prelude + `solo = worker("solo", "pw")
builder("parent", [solo, w1], [step.trigger("tc", wait = True)])
builder("child", [solo], [step.shell("x")])
builder("other", [w1], [step.trigger("tc", wait = True)])
builder("free", [solo], [step.trigger("tc")])
scheduler.triggerable("tc", ["child"])
`}, []string{
			`regent.star:4:32: builder "parent": step "trigger" waits for builder "child", which only worker "solo" runs, with one build at a time: a build of "parent" running there would wait for ever; give "child" more workers or slots, or do not wait`,
		}},
		{"filters and parameters", map[string]string{"regent.star": prelude + `builder("b", [w1], [step.shell("x", env = {"1X": "y", "OK": 3}, workdir = "/abs")])
scheduler.any_branch("a", app, ["b"], branch_pattern = "feature/(", paths = ["[x"])
scheduler.branch("br", app, "dev", ["b"])
scheduler.force("f", ["b"], parameters = [param.choice("env", ["a"], default = "z"), param.int("n"), param.int("n"), "p"])
`}, []string{
			`regent.star:3:21: step "x": workdir: "/abs" leaves the build directory; use a relative path inside it`,
			`regent.star:3:21: step "x": env: "1X" is not a valid environment variable name`,
			`regent.star:3:21: step "x": env[OK]: want a string or a secret(), got int`,
			`regent.star:4:1: scheduler "a": paths: "[x" is not a valid path pattern`,
			"regent.star:4:1: scheduler \"a\": branch_pattern: \"feature/(\" is not a valid regular expression: error parsing regexp: missing closing ): `^(?:feature/()$`",
			`regent.star:5:1: scheduler "br": branch: git_repo "app" does not watch branch "dev" (it watches main); add the branch to its branches`,
			`regent.star:6:1: scheduler "f": parameters: want parameters made by param.string, param.int, param.bool or param.choice, got string`,
			`regent.star:6:43: force_parameter "env": default: "z" is not one of the choices`,
			`regent.star:6:102: scheduler "f": two parameters are named "n"`,
		}},
		{"secrets", map[string]string{"regent.star": prelude + `worker("w2", secret("missing"))
builder("b", [w1], [step.shell("x", env = {"T": secret("gone")})], env = {"U": secret("token")})
secret("bad/name")
`}, []string{
			// "gone" is a step's env secret: the worker resolves it, so the
			// master does not need it.
			`regent.star:3:14: secret "missing": not found by the secret provider`,
			`regent.star:5:1: secret "bad/name": name: "bad/name" is not a valid name: use 1 to 100 letters, digits, '.', '_' or '-', starting with a letter or digit`,
		}},
		{"step names", map[string]string{"regent.star": prelude + `builder("b", [w1], [step.shell("x", name = "build"), step.shell("y", name = "build"), step.shell("z", name = " pad")])
`}, []string{
			`regent.star:3:54: builder "b": two steps are named "build"; a step name must be unique in its builder`,
			`regent.star:3:87: step "z": name: " pad" is not a valid step name: use 1 to 100 printable characters, without leading or trailing spaces`,
		}},
		{"repository secrets and tags", map[string]string{"regent.star": `git_repo("r", "https://h/r.git", webhook_secret = "plain", tags = ["v 1"])
git_repo("s", "https://h/s.git", credentials = secret("missing"), branches = [])
builder("b", ["w"], [step.shell("x", set_property = "no good")])
worker("w", "pw")
`}, []string{
			`regent.star:1:1: git_repo "r": tags: "v 1" is not a valid tag name or pattern`,
			`regent.star:1:1: git_repo "r": webhook_secret: want secret("name"), got string; a value written in the configuration would be stored with it`,
			`regent.star:2:1: git_repo "s": branches: list at least one branch or tag to watch`,
			`regent.star:2:48: secret "missing": not found by the secret provider`,
			`regent.star:3:22: step "x": set_property: "no good" is not a valid name: use 1 to 100 letters, digits, '.', '_' or '-', starting with a letter or digit`,
		}},
		{"unsafe git inputs", map[string]string{"regent.star": `git_repo("r", "--upload-pack=evil", branches = ["-x", "a..b", "ok"])
`}, []string{
			`regent.star:1:1: git_repo "r": url: "--upload-pack=evil" starts with '-', which git would read as an option`,
			`regent.star:1:1: git_repo "r": branches: "-x" is not a valid branch name`,
			`regent.star:1:1: git_repo "r": branches: "a..b" is not a valid branch name`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := errorLines(t, tt.files)
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// TestNoSecretProvider checks that secret() without a provider is refused.
func TestNoSecretProvider(t *testing.T) {
	t.Parallel()
	dir := writeFiles(t, map[string]string{"regent.star": `worker("w", secret("pw"))` + "\n"})
	_, err := Load(context.Background(), dir, Options{})
	want := `regent.star:1:13: secret "pw": no secret provider is configured ` +
		`(give the master a secrets directory or REGENT_SECRET_* variables)`
	if err == nil || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
}

// TestAllErrorsAtOnce is field case C16: builder 400 of 500 names a worker
// that does not exist; the configuration is refused with one error, at the
// line of that builder.
func TestAllErrorsAtOnce(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString(`worker("w1", "pw")` + "\n")
	for i := 1; i <= 500; i++ {
		w := "w1"
		if i == 400 {
			w = "w404"
		}
		fmt.Fprintf(&b, "builder(\"b%d\", [\"%s\"], [step.shell(\"make\")])\n", i, w)
	}
	got := errorLines(t, map[string]string{"regent.star": b.String()})
	want := []string{`regent.star:401:1: builder "b400": workers: unknown worker "w404"`}
	eq(t, got, want)
}

// TestErrorsAs checks that callers can inspect each problem.
func TestErrorsAs(t *testing.T) {
	t.Parallel()
	_, err := loadFiles(t, map[string]string{"regent.star": prelude + `builder("b", ["w9"], [step.shell("x")])` + "\n"})
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("errors.As(*Error) failed on %v", err)
	}
	eq(t, *e, Error{Pos: Pos{"regent.star", 3, 1}, Kind: "builder", Name: "b",
		Msg: `workers: unknown worker "w9" (did you mean "w1"?)`})
}

// TestMissingEntryFile checks the error for a root without regent.star.
func TestMissingEntryFile(t *testing.T) {
	t.Parallel()
	got := errorLines(t, map[string]string{"other.star": ""})
	eq(t, got, []string{"regent.star: no regent.star at the configuration root: it is the file evaluation starts from"})
}
