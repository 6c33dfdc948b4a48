package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/regent-ci/regent/internal/testutil/procs"
)

// regentCLI runs the regent binary with args and returns its output and
// exit status.
func regentCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(procs.Regent(t), args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("run regent %v: %v", args, err)
	}
	return out.String(), errOut.String(), code
}

// `regent build force|cancel|rebuild|show|logs` against a master that
// requires an admin token for actions.
func TestBuildCommands(t *testing.T) {
	t.Parallel()
	token := filepath.Join(t.TempDir(), "token")
	writeFile(t, token, "s3cret\n")
	star := `
worker(name = "w1", password = secret("w1"), max_builds = 2)
builder(name = "ok", workers = ["w1"], steps = [
    step.shell(name = "greet", command = "echo hello $REGENT_PROP_WHO"),
    step.shell(name = "count", command = "for i in 1 2 3; do echo n$i; sleep 0.3; done; printf no-newline"),
])
builder(name = "bad", workers = ["w1"], steps = [step.shell(name = "fail", command = "echo oops; exit 3")])
builder(name = "long", workers = ["w1"], steps = [step.shell(name = "wait", command = "echo waiting; sleep 60")])
scheduler.force(name = "force", builders = ["ok", "bad", "long"])
`
	f := newFarm(t, star, farmOptions{workers: []string{"w1"}, args: []string{"--admin-token-file", token}})
	f.worker("w1", t.TempDir())
	api := []string{"--api", f.url(0), "--token-file", token}
	run := func(want int, args ...string) string {
		t.Helper()
		out, errOut, code := regentCLI(t, append(args, api...)...)
		if code != want {
			t.Fatalf("regent %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s",
				strings.Join(args, " "), code, want, out, errOut)
		}
		return out + errOut
	}

	out := run(0, "build", "force", "ok", "-p", "who=world", "--wait")
	m := regexp.MustCompile(`build (\d+) \(ok #1\): success`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("force --wait printed %q", out)
	}
	id := m[1]
	out = run(0, "build", "show", id)
	for _, want := range []string{"finished: success", "greet", "count", "who = world", "worker    w1"} {
		if !strings.Contains(out, want) {
			t.Errorf("show is missing %q:\n%s", want, out)
		}
	}
	out = run(0, "build", "logs", id)
	if want := "==> step 1: greet <==\nhello world\n==> step 2: count <==\nn1\nn2\nn3\nno-newline\n"; out != want {
		t.Fatalf("logs printed %q, want %q", out, want)
	}
	if out := run(0, "build", "logs", id, "--step", "2"); out != "n1\nn2\nn3\nno-newline" {
		t.Fatalf("logs --step 2 printed %q", out)
	}
	if out := run(0, "build", "show", id, "--json"); !strings.Contains(out, `"steps": [`) {
		t.Fatalf("show --json printed %q", out)
	}

	// A failed build: force --wait, show and logs --follow exit 1.
	out = run(1, "build", "force", "bad", "--wait")
	bad := regexp.MustCompile(`build (\d+) \(bad #1\): failure`).FindStringSubmatch(out)
	if bad == nil {
		t.Fatalf("force --wait of a failing build printed %q", out)
	}
	run(1, "build", "show", bad[1])
	if out := run(1, "build", "logs", bad[1], "--follow"); !strings.Contains(out, "oops") {
		t.Fatalf("logs --follow of the failed build printed %q", out)
	}

	// Following a running build prints its output as it comes, to the end.
	out = run(0, "build", "force", "ok", "-p", "who=you")
	req, _ := strconv.ParseInt(regexp.MustCompile(`request (\d+)`).FindStringSubmatch(out)[1], 10, 64)
	running := f.buildOf(req, 30*time.Second)
	if out := run(0, "build", "logs", fmt.Sprint(running), "--follow"); !strings.HasSuffix(out, "n3\nno-newline\n") {
		t.Fatalf("logs --follow printed %q", out)
	}

	// Cancel needs the token; with it, the build ends cancelled.
	out = run(0, "build", "force", "long")
	req, _ = strconv.ParseInt(regexp.MustCompile(`request (\d+)`).FindStringSubmatch(out)[1], 10, 64)
	long := f.buildOf(req, 30*time.Second)
	f.waitLog(long, 1, "waiting", 30*time.Second)
	if _, errOut, code := regentCLI(t, "build", "cancel", fmt.Sprint(long), "--api", f.url(0)); code != 2 ||
		!strings.Contains(errOut, "admin token") {
		t.Fatalf("cancel without the token: exit %d, %q", code, errOut)
	}
	run(0, "build", "cancel", fmt.Sprint(long), "--reason", "enough")
	if b := f.waitFinished(long, 30*time.Second); result(b) != "cancelled" || !strings.Contains(b.Reason, "enough") {
		t.Fatalf("cancelled build: %s (%q)", result(b), b.Reason)
	}
	run(1, "build", "show", fmt.Sprint(long))
	run(2, "build", "cancel", fmt.Sprint(long))

	out = run(0, "build", "rebuild", id, "--wait")
	if !regexp.MustCompile(`\(ok #\d+\): success`).MatchString(out) {
		t.Fatalf("rebuild --wait printed %q", out)
	}

	// Usage and runtime errors exit 2.
	run(2, "build", "show", "999999")
	run(2, "build", "show", "x")
	run(2, "build", "logs", id, "--step", "9", "--follow")
	run(2, "build", "force", "nosuch")
	run(2, "build", "frobnicate")
	if _, _, code := regentCLI(t, "build", "show", "1", "--api", "http://127.0.0.1:1"); code != 2 {
		t.Fatalf("show against no master: exit %d, want 2", code)
	}
}
