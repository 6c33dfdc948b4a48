package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/regent-ci/regent/internal/testutil/procs"
)

// startWorker starts the named worker of f against all its masters, with
// extra command-line arguments and environment variables.
func startWorker(f *farm, name, basedir string, args, env []string) *procs.Proc {
	f.t.Helper()
	var urls []string
	for i := range f.masters {
		urls = append(urls, f.url(i))
	}
	p := procs.Start(f.t, procs.Spec{Name: "worker-" + name, Path: procs.Regent(f.t), Env: env,
		Args: append([]string{"worker", "--master", strings.Join(urls, ","), "--name", name,
			"--password-file", filepath.Join(f.secrets, name), "--basedir", basedir}, args...)})
	f.started = append(f.started, p)
	return p
}

// runBuild forces a build of builder and waits for it to finish.
func runBuild(f *farm, builder string) apiBuild {
	f.t.Helper()
	id := f.buildOf(f.forceOn(0, builder), 30*time.Second)
	return f.waitFinished(id, 60*time.Second)
}

// Secrets in a step's and a builder's env are resolved by the worker,
// from its environment and its secrets directory, and masked in the log
// even when printed in two pieces; the worker's REGENT_SECRET_* variables
// do not reach the step. A secret the worker lacks fails the step as an
// exception naming it.
func TestStepSecretsAreResolvedAndMasked(t *testing.T) {
	t.Parallel()
	const plain = `worker(name = "w1", password = secret("w1"))
builder(name = "none", workers = ["w1"], steps = [step.shell("true")])
scheduler.force(name = "force", builders = ["none"])
`
	f := newFarm(t, plain, farmOptions{workers: []string{"w1"}})
	const tok, btok, gone = "tok-Value-1234", "btok-Other-5678", "gone-Value-9999"
	// The master checks that the secrets exist when it applies the
	// configuration; the worker resolves them on its own.
	for name, v := range map[string]string{"tok": tok, "btok": btok, "gone": gone} {
		writeFile(t, filepath.Join(f.secrets, name), v+"\n")
	}
	f.apply(plain + `
builder(name = "s", workers = ["w1"], env = {"BTOK": secret("btok")}, steps = [
    step.shell(name = "show", env = {"TOK": secret("tok")}, command = """
echo "tok=$TOK"
echo "btok=$BTOK"
printf '%s' "${TOK%????}"; sleep 0.3; printf '%s\n' "${TOK#${TOK%????}}"
echo "leaked=$(env | grep -c ^REGENT_SECRET_)"
test -n "$TOK" && test -n "$BTOK"
"""),
])
builder(name = "m", workers = ["w1"], steps = [
    step.shell(name = "needs-gone", env = {"GONE": secret("gone")}, command = "echo ran"),
])
scheduler.force(name = "force2", builders = ["s", "m"])
`)
	workerSecrets := t.TempDir()
	writeFile(t, filepath.Join(workerSecrets, "btok"), btok+"\n")
	startWorker(f, "w1", t.TempDir(), []string{"--secrets-dir", workerSecrets},
		[]string{"REGENT_SECRET_TOK=" + tok})

	b := runBuild(f, "s")
	log := f.stepLog(b.ID, 1)
	if result(b) != "success" {
		t.Fatalf("build with secrets ended %s (%s); log:\n%s", result(b), b.Reason, log)
	}
	for _, v := range []string{tok, btok} {
		if strings.Contains(log, v) {
			t.Errorf("the log shows secret %q:\n%s", v, log)
		}
	}
	want := "tok=***\nbtok=***\n***\nleaked=0\n"
	if log != want {
		t.Errorf("log is %q, want %q", log, want)
	}

	b = runBuild(f, "m")
	if result(b) != "exception" || !strings.Contains(b.Reason, `"gone"`) {
		t.Errorf("build with a missing secret ended %s (%q), want exception naming the secret",
			result(b), b.Reason)
	}
	if strings.Contains(b.Reason, gone) {
		t.Errorf("the reason shows the secret's value: %q", b.Reason)
	}
	if log := f.stepLog(b.ID, 1); strings.Contains(log, "ran") {
		t.Errorf("the step ran without its secret: %q", log)
	}
}

// A set_property step's trimmed output becomes a build property that
// later steps see in their command, env and REGENT_PROP_* variables.
func TestSetPropertyAndInterpolation(t *testing.T) {
	t.Parallel()
	star := `worker(name = "w1", password = secret("w1"))
builder(name = "p", workers = ["w1"], properties = {"greeting": "hi"},
        env = {"B": "b-%(prop:greeting)s"}, steps = [
    step.shell(name = "version", command = "echo '  v1.2.3  '; echo noise >&2",
               set_property = "version"),
    step.shell(name = "use", env = {"V": "v-%(prop:version)s"}, command =
        "echo cmd=%(prop:version)s env=$V prop=$REGENT_PROP_VERSION b=$B d=%(prop:none:-dflt)s"),
])
scheduler.force(name = "force", builders = ["p"])
`
	f := newFarm(t, star, farmOptions{workers: []string{"w1"}})
	f.worker("w1", t.TempDir())
	b := runBuild(f, "p")
	if result(b) != "success" {
		t.Fatalf("build ended %s: %s", result(b), b.Reason)
	}
	if got := b.Properties["version"]; got != "v1.2.3" {
		t.Errorf("property version = %q, want v1.2.3", got)
	}
	want := "cmd=v1.2.3 env=v-v1.2.3 prop=v1.2.3 b=b-hi d=dflt\n"
	if log := f.stepLog(b.ID, 2); log != want {
		t.Errorf("second step's log is %q, want %q", log, want)
	}
}

// Without --max-builds a worker runs as many builds at once as its
// max_builds in the configuration.
func TestWorkerTakesMaxBuildsFromTheMaster(t *testing.T) {
	t.Parallel()
	hold := filepath.Join(t.TempDir(), "hold")
	writeFile(t, hold, "")
	step := fmt.Sprintf(`step.shell(name = "hold", command = "echo holding; `+
		`while [ -e %s ]; do sleep 0.1; done")`, hold)
	star := fmt.Sprintf(`worker(name = "w1", password = secret("w1"), max_builds = 2)
builder(name = "a", workers = ["w1"], steps = [%s])
builder(name = "b", workers = ["w1"], steps = [%s])
scheduler.force(name = "force", builders = ["a", "b"])
`, step, step)
	f := newFarm(t, star, farmOptions{workers: []string{"w1"}})
	f.worker("w1", t.TempDir())
	a := f.buildOf(f.forceOn(0, "a"), 30*time.Second)
	b := f.buildOf(f.forceOn(0, "b"), 30*time.Second)
	f.waitLog(a, 1, "holding", 30*time.Second)
	f.waitLog(b, 1, "holding", 30*time.Second)
	os.Remove(hold)
	for _, id := range []int64{a, b} {
		if got := f.waitFinished(id, 30*time.Second); result(got) != "success" {
			t.Errorf("build %d ended %s: %s", id, result(got), got.Reason)
		}
	}
}

// A worker killed with SIGKILL takes its step's shell with it.
func TestKilledWorkerTakesItsStepAlong(t *testing.T) {
	t.Parallel()
	pid := pidFile(t)
	star := fmt.Sprintf(`worker(name = "w1", password = secret("w1"))
builder(name = "k", workers = ["w1"], steps = [
    step.shell(name = "loop", command = "echo $$ > %s; echo looping; while :; do sleep 0.1; done"),
])
scheduler.force(name = "force", builders = ["k"])
`, pid)
	f := newFarm(t, star, farmOptions{workers: []string{"w1"}})
	w := f.worker("w1", t.TempDir())
	id := f.buildOf(f.forceOn(0, "k"), 30*time.Second)
	f.waitLog(id, 1, "looping", 30*time.Second)
	b, err := os.ReadFile(pid)
	if err != nil {
		t.Fatal(err)
	}
	shell, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	if !alive(shell) {
		t.Fatalf("the step's shell %d is not running before the kill", shell)
	}
	if err := w.Kill(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() error {
		if alive(shell) {
			return fmt.Errorf("the step's shell %d still runs after its worker was killed", shell)
		}
		return nil
	})
}

// alive reports whether pid is a process that has not exited; a zombie
// waiting for its parent to reap it has.
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses.
	s := string(stat)
	rest := s[strings.LastIndexByte(s, ')')+1:]
	return !strings.HasPrefix(strings.TrimSpace(rest), "Z")
}
