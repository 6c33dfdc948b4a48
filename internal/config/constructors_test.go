package config

import (
	"reflect"
	"testing"
	"time"
)

// TestConstructors evaluates each constructor with its defaults and with
// every argument given, and checks the desired state it declares.
func TestConstructors(t *testing.T) {
	t.Parallel()
	minute := Duration(time.Minute)
	tests := []struct {
		name  string
		src   string
		check func(t *testing.T, st *State)
	}{
		{"git_repo defaults", `git_repo("app", "https://example.com/app.git")`, func(t *testing.T, st *State) {
			want := Repo{Name: "app", URL: "https://example.com/app.git", Branches: []string{"main"},
				PollInterval: minute, Pos: Pos{"regent.star", 1, 1}}
			eq(t, st.Repos, []Repo{want})
		}},
		{"git_repo full", `git_repo(name = "app", url = "git@host:app.git", branches = ["release", "main"],
    poll_interval = "90s", masters = ["eu", "eu"])`, func(t *testing.T, st *State) {
			want := Repo{Name: "app", URL: "git@host:app.git", Branches: []string{"main", "release"},
				PollInterval: Duration(90 * time.Second), Masters: []string{"eu"}, Pos: Pos{"regent.star", 1, 1}}
			eq(t, st.Repos, []Repo{want})
		}},
		{"git_repo webhook only", `git_repo("app", "https://h/app.git", poll_interval = None)`, func(t *testing.T, st *State) {
			eq(t, st.Repos[0].PollInterval, Duration(0))
		}},
		{"git_repo tags and secrets", `git_repo("app", "https://h/app.git", branches = [], tags = ["v*", "latest"],
    webhook_secret = secret("token"), credentials = secret("worker-pw"))`, func(t *testing.T, st *State) {
			r := st.Repos[0]
			eq(t, r.Branches, []string(nil))
			eq(t, r.Tags, []string{"latest", "v*"})
			eq(t, r.WebhookSecret, "token")
			eq(t, r.Credentials, "worker-pw")
		}},
		{"worker defaults", `worker("w", "pw")`, func(t *testing.T, st *State) {
			eq(t, st.Workers, []Worker{{Name: "w", Password: "pw", MaxBuilds: 1, Pos: Pos{"regent.star", 1, 1}}})
		}},
		{"worker full", `worker(name = "w", password = secret("worker-pw"), max_builds = 4, tags = ["linux", "amd64"])`,
			func(t *testing.T, st *State) {
				eq(t, st.Workers, []Worker{{Name: "w", Password: "from-secret", MaxBuilds: 4,
					Tags: []string{"amd64", "linux"}, Pos: Pos{"regent.star", 1, 1}}})
			}},
		{"lock", "lock(\"db\")\nlock(\"pool\", max_holders = 3)", func(t *testing.T, st *State) {
			eq(t, st.Locks, []Lock{{Name: "db", MaxHolders: 1, Pos: Pos{"regent.star", 1, 1}},
				{Name: "pool", MaxHolders: 3, Pos: Pos{"regent.star", 2, 1}}})
		}},
		{"builder defaults", prelude + `builder("b", [w1], [step.shell("make")])`, func(t *testing.T, st *State) {
			want := Builder{Name: "b", Workers: []string{"w1"}, Pos: Pos{"regent.star", 3, 1},
				Steps: []Step{{Kind: StepShell, Name: "make", Command: "make", Timeout: Duration(20 * time.Minute),
					HaltOnFailure: true, Pos: Pos{"regent.star", 3, 21}}}}
			eq(t, st.Builders, []Builder{want})
		}},
		{"builder full", prelude + `worker("w2", "pw", tags = ["gpu"])
worker("w3", "pw", tags = ["gpu"])
lock("db")
builder(
    name = "b",
    workers = ["w1", "tag:gpu", w1],
    steps = [step.git(app)],
    env = {"A": "1", "TOKEN": secret("token")},
    properties = {"s": "x", "n": 3, "flag": True},
    tags = ["slow", "nightly"],
    description = "the builder",
    previous_names = ["old-b", "older-b"],
    retry_lost = True,
    locks = ["db"],
    collapse_requests = True,
)`, func(t *testing.T, st *State) {
			b := st.Builders[0]
			eq(t, b.Workers, []string{"w1", "w2", "w3"})
			eq(t, b.Env, map[string]string{"A": "1"})
			eq(t, b.SecretEnv, map[string]string{"TOKEN": "token"})
			eq(t, b.Properties, map[string]string{"s": "x", "n": "3", "flag": "true"})
			eq(t, b.Tags, []string{"nightly", "slow"})
			eq(t, b.Description, "the builder")
			eq(t, b.PreviousNames, []string{"old-b", "older-b"})
			eq(t, b.RetryLost, true)
			eq(t, b.Locks, []string{"db"})
			eq(t, b.CollapseRequests, true)
			eq(t, b.Pos, Pos{"regent.star", 6, 1})
		}},
		{"builder takes a single worker", prelude + `builder("b", w1, [step.shell("make")])`, func(t *testing.T, st *State) {
			eq(t, st.Builders[0].Workers, []string{"w1"})
		}},
		{"step.git", prelude + `builder("b", [w1], [step.git(app), step.git("app", name = "checkout",
    workdir = "src", timeout = "5m", halt_on_failure = False)])`, func(t *testing.T, st *State) {
			eq(t, st.Builders[0].Steps, []Step{
				{Kind: StepGit, Name: "git", Repo: "app", RepoURL: "https://example.com/app.git",
					Timeout: Duration(20 * time.Minute), HaltOnFailure: true, Pos: Pos{"regent.star", 3, 21}},
				{Kind: StepGit, Name: "checkout", Repo: "app", RepoURL: "https://example.com/app.git",
					Workdir: "src", Timeout: Duration(5 * time.Minute), Pos: Pos{"regent.star", 3, 36}},
			})
		}},
		{"step.shell full", prelude + `lock("l")
builder("b", [w1], [step.shell("./run.sh", name = "run it", timeout = "1h", no_output_timeout = "2m",
    env = {"X": "y", "T": secret("token")}, workdir = "sub/dir", halt_on_failure = False, locks = ["l"],
    set_property = "version")])`,
			func(t *testing.T, st *State) {
				eq(t, st.Builders[0].Steps, []Step{{Kind: StepShell, Name: "run it", Command: "./run.sh",
					Timeout: Duration(time.Hour), NoOutputTimeout: Duration(2 * time.Minute),
					Env: map[string]string{"X": "y"}, SecretEnv: map[string]string{"T": "token"},
					Workdir: "sub/dir", Locks: []string{"l"}, SetProperty: "version", Pos: Pos{"regent.star", 4, 21}}})
			}},
		{"step names derived and numbered", prelude + `builder("b", [w1], [
    step.shell("make"), step.shell("make"), step.shell("go build ./..."),
    step.shell("make", name = "make 2"), step.shell("cd web && npm ci"),
])`, func(t *testing.T, st *State) {
			var names []string
			for _, s := range st.Builders[0].Steps {
				names = append(names, s.Name)
			}
			eq(t, names, []string{"make", "make 3", "go build", "make 2", "npm ci"})
		}},
		{"step shared by builders", prelude + `s = step.shell("make")
builder("a", [w1], [s, s])
builder("b", [w1], [s])`, func(t *testing.T, st *State) {
			eq(t, st.Builders[0].Steps[1].Name, "make 2")
			eq(t, st.Builders[1].Steps[0].Name, "make")
		}},
		{"step.trigger", prelude + `builder("t", [w1, worker("w2", "pw")], [step.shell("make")])
scheduler.triggerable("tests", ["t"])
builder("b", [w1], [step.trigger("tests", wait = True), step.trigger(["tests"], name = "again")])`,
			func(t *testing.T, st *State) {
				b, _ := st.Builder("b")
				eq(t, b.Steps[0], Step{Kind: StepTrigger, Name: "trigger", Schedulers: []string{"tests"},
					Wait: true, HaltOnFailure: true, Pos: Pos{"regent.star", 5, 21}})
				eq(t, b.Steps[1].Name, "again")
			}},
		{"scheduler.branch", prelude + `b = builder("b", [w1], [step.shell("make")])
scheduler.branch("main", app, "main", [b], tree_stable_timer = "30s", paths = ["src/", "*.go"],
    authors = ["bob@example.com"], masters = ["eu"])`, func(t *testing.T, st *State) {
			eq(t, st.Schedulers, []Scheduler{{Name: "main", Kind: SchedulerBranch, Repo: "app", Branch: "main",
				Builders: []string{"b"}, TreeStableTimer: Duration(30 * time.Second), Masters: []string{"eu"},
				Paths: []string{"*.go", "src/"}, Authors: []string{"bob@example.com"}, Pos: Pos{"regent.star", 4, 1}}})
		}},
		{"scheduler.any_branch", prelude + `builder("b", [w1], [step.shell("make")])
scheduler.any_branch("any", "app", "b", branch_pattern = "feature/.*")`, func(t *testing.T, st *State) {
			eq(t, st.Schedulers[0].Kind, SchedulerAnyBranch)
			eq(t, st.Schedulers[0].BranchPattern, "feature/.*")
			eq(t, st.Schedulers[0].Builders, []string{"b"})
		}},
		{"scheduler.force with parameters", prelude + `builder("b", [w1], [step.shell("make")])
scheduler.force("force", ["b"], parameters = [
    param.string("reason", label = "Why", required = True),
    param.int("jobs", default = 4),
    param.bool("clean"),
    param.choice("env", ["staging", "prod"]),
    param.choice("region", ["eu", "us"], default = "us"),
])`, func(t *testing.T, st *State) {
			eq(t, st.Schedulers[0].Parameters, []ForceParameter{
				{Name: "reason", Kind: ParamString, Label: "Why", Required: true},
				{Name: "jobs", Kind: ParamInt, Default: "4"},
				{Name: "clean", Kind: ParamBool, Default: "false"},
				{Name: "env", Kind: ParamChoice, Default: "staging", Choices: []string{"staging", "prod"}},
				{Name: "region", Kind: ParamChoice, Default: "us", Choices: []string{"eu", "us"}},
			})
		}},
		{"scheduler.cron", prelude + `builder("b", [w1], [step.shell("make")])
scheduler.cron("nightly", ["b"], cron = "30 2 * * 1-5", timezone = "Europe/Paris", masters = ["eu"])
scheduler.cron("daily", ["b"], cron = "@daily")`, func(t *testing.T, st *State) {
			eq(t, st.Schedulers[1].Cron, "30 2 * * 1-5")
			eq(t, st.Schedulers[1].Timezone, "Europe/Paris")
			eq(t, st.Schedulers[0].Timezone, "UTC")
		}},
		{"scheduler.periodic", prelude + `builder("b", [w1], [step.shell("make")])
scheduler.periodic("hourly", ["b"], interval = "1h")`, func(t *testing.T, st *State) {
			eq(t, st.Schedulers[0].Interval, Duration(time.Hour))
			eq(t, st.Schedulers[0].Kind, SchedulerPeriodic)
		}},
		{"scheduler properties", prelude + `builder("b", [w1], [step.shell("make")])
scheduler.periodic("hourly", ["b"], interval = "1h", properties = {"nightly": True})
scheduler.triggerable("t", ["b"], properties = {"n": 2})`, func(t *testing.T, st *State) {
			eq(t, st.Schedulers[0].Properties, map[string]string{"nightly": "true"})
			eq(t, st.Schedulers[1].Properties, map[string]string{"n": "2"})
		}},
		{"scheduler.dependent", prelude + `a = builder("a", [w1], [step.shell("make")])
builder("b", [w1], [step.shell("make")])
scheduler.dependent("after-a", upstream = [a], builders = ["b"])`, func(t *testing.T, st *State) {
			eq(t, st.Schedulers[0].Upstream, []string{"a"})
			eq(t, st.Schedulers[0].Builders, []string{"b"})
		}},
		{"values carry names", prelude + `b = builder("b", [w1], [step.shell("make")])
builder("c", [w1.name], [step.shell("echo " + b.name + " " + app.name)])`, func(t *testing.T, st *State) {
			eq(t, st.Builders[1].Steps[0].Command, "echo b app")
		}},
		{"top-level loops", `for i in range(3):
    worker("w%d" % i, "pw")`, func(t *testing.T, st *State) {
			eq(t, len(st.Workers), 3)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.check(t, mustLoad(t, tt.src))
		})
	}
}

// TestLoadHelperFiles evaluates a configuration split over files, with
// helpers loaded from a subdirectory and a file loaded twice.
func TestLoadHelperFiles(t *testing.T) {
	t.Parallel()
	st, err := loadFiles(t, map[string]string{
		"regent.star": `load("lib/go.star", "go_builder")
load("lib/workers.star", "pool")
go_builder("api", pool)
go_builder("web", pool)
`,
		"lib/go.star": `load("lib/workers.star", "checkout")
def go_builder(name, workers):
    return builder(name, workers, [checkout, step.shell("go test ./...")])
`,
		"lib/workers.star": `pool = [worker("w%d" % i, "pw") for i in range(2)]
repo = git_repo("app", "https://example.com/app.git")
checkout = step.git(repo)
`,
	})
	if err != nil {
		t.Fatal(err)
	}
	eq(t, len(st.Workers), 2)
	eq(t, len(st.Repos), 1)
	b, _ := st.Builder("web")
	eq(t, b.Workers, []string{"w0", "w1"})
	eq(t, b.Steps[1].Pos, Pos{"lib/go.star", 3, 46})
	eq(t, b.Pos, Pos{"lib/go.star", 3, 12})
}

// TestPrint checks that print() reaches Options.Print with its position.
func TestPrint(t *testing.T) {
	t.Parallel()
	dir := writeFiles(t, map[string]string{"regent.star": "print(\"hello\", 42)\n"})
	var got []string
	_, err := Load(t.Context(), dir, Options{Print: func(pos Pos, msg string) {
		got = append(got, pos.String()+" "+msg)
	}})
	if err != nil {
		t.Fatal(err)
	}
	eq(t, got, []string{"regent.star:1:1 hello 42"})
}

// TestDeterministic evaluates the same configuration twice and gets the
// same state, byte for byte.
func TestDeterministic(t *testing.T) {
	t.Parallel()
	src := prelude + `d = {"b%d" % i: i for i in range(50)}
for name in d:
    builder(name, [w1], [step.shell("echo %d" % d[name])], properties = {"k": name})
s = set([3, 1, 2])
`
	a, b := mustLoad(t, src), mustLoad(t, src)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("two evaluations of the same configuration differ")
	}
	if ContentHash(a, nil) != ContentHash(b, nil) {
		t.Fatal("content hashes differ")
	}
}

// eq fails the test when got and want differ.
func eq[T any](t *testing.T, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %#v\nwant %#v", got, want)
	}
}
