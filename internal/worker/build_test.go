package worker

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/regent-ci/regent/internal/build"
	"github.com/regent-ci/regent/internal/config"
)

func TestShellStepsResultsAndEnvironment(t *testing.T) {
	t.Parallel()
	c, _, _ := newCluster(t)

	env := shell(`echo "$REGENT_PROP_FOO_BAR $REGENT_BUILDER $REGENT_WORKER $FROM_BUILD $OVERRIDE"`)
	env.Env = map[string]string{"OVERRIDE": "step"}
	a := newBuild(
		shell("echo out; echo err >&2; echo out again"),
		shell("exit 3"),
		env,
	)
	a.Properties = map[string]string{"foo.bar": "prop"}
	a.Env = map[string]string{"FROM_BUILD": "build", "OVERRIDE": "build"}
	c.assign(a)

	b := c.waitFinished(a.BuildID, 20*time.Second)
	checkResult(t, b, build.Failure, `step "exit 3": exit status 3`)
	checkLog(t, b, 1, []byte("out\nerr\nout again\n"))
	checkLog(t, b, 3, []byte("prop b w1 build step\n"))
	for n, want := range map[int]string{1: build.Success, 2: build.Failure, 3: build.Success} {
		if got := b.steps[n].result; got != want {
			t.Errorf("step %d ended %q, want %q", n, got, want)
		}
	}
	if b.steps[2].reason != "exit status 3" {
		t.Errorf("step 2 reason %q, want %q", b.steps[2].reason, "exit status 3")
	}
	if b.steps[1].name != "echo out; echo err >&2; echo out again" {
		t.Errorf("step 1 is named %q, want its command", b.steps[1].name)
	}
}

func TestHaltOnFailureStopsTheBuild(t *testing.T) {
	t.Parallel()
	c, _, _ := newCluster(t)

	halting := shell("echo failing; false")
	halting.HaltOnFailure = true
	a := newBuild(shell("true"), halting, shell("echo never"))
	c.assign(a)

	b := c.waitFinished(a.BuildID, 20*time.Second)
	checkResult(t, b, build.Failure, "exit status 1")
	if len(b.steps) != 2 {
		t.Fatalf("%d steps were reported, want 2: the step after a halting failure must not start",
			len(b.steps))
	}
}

func TestWorkdirAndCleanWorkspace(t *testing.T) {
	t.Parallel()
	c, _, cfg := newCluster(t)
	builderDir := filepath.Join(cfg.Basedir, "b")

	step := shell(`pwd; echo data > left-behind`)
	step.Workdir = "sub/dir"
	a := newBuild(step)
	c.assign(a)
	b := c.waitFinished(a.BuildID, 20*time.Second)
	checkResult(t, b, build.Success, "")
	wantDir := filepath.Join(builderDir, "build", "sub", "dir")
	checkLog(t, b, 1, []byte(wantDir+"\n"))

	a = newBuild(shell("ls -A"))
	a.CleanWorkspace = true
	c.assign(a)
	b = c.waitFinished(a.BuildID, 20*time.Second)
	checkResult(t, b, build.Success, "")
	checkLog(t, b, 1, nil)
}

func TestBuilderNamesAreSafeDirectories(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]string{
		"unit-tests": "unit-tests",
		"../escape":  "_.._escape",
		"a/b":        "a_b",
		".hidden":    "_.hidden",
		"":           "_",
		"π":          "_",
	} {
		if got := dirName(name); got != want {
			t.Errorf("dirName(%q) = %q, want %q", name, got, want)
		}
	}
}

// gitRepo is a real repository for checkouts, on branch main.
type gitRepo struct {
	t   *testing.T
	dir string
}

func newGitRepo(t *testing.T) *gitRepo {
	r := &gitRepo{t: t, dir: t.TempDir()}
	r.git("init", "--quiet", "--initial-branch=main")
	return r
}

func (r *gitRepo) git(args ...string) string {
	r.t.Helper()
	cmd := exec.Command("git", append([]string{"-c", "user.name=Test", "-c", "user.email=t@example.com"},
		args...)...)
	cmd.Dir = r.dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// commit writes content to file and commits it, returning the revision.
func (r *gitRepo) commit(file, content string) string {
	r.t.Helper()
	if err := os.WriteFile(filepath.Join(r.dir, file), []byte(content), 0o644); err != nil {
		r.t.Fatal(err)
	}
	r.git("add", file)
	r.git("commit", "--quiet", "-m", "change "+file)
	return r.git("rev-parse", "HEAD")
}

func TestGitCheckoutThenShell(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatalf("git is required: %v", err)
	}
	repo := newGitRepo(t)
	first := repo.commit("version.txt", "one\n")
	c, _, cfg := newCluster(t)
	gitStep := config.Step{Kind: config.StepGit, Name: "checkout", RepoURL: repo.dir}
	cat := shell("cat version.txt; ls -A | grep -v '^.git$' | tr '\\n' ' '")

	run := func(props map[string]string, wantLog, wantRev string) {
		t.Helper()
		a := newBuild(gitStep, cat)
		a.Properties = props
		c.assign(a)
		b := c.waitFinished(a.BuildID, 30*time.Second)
		checkResult(t, b, build.Success, "")
		checkLog(t, b, 2, []byte(wantLog))
		if got := b.steps[1].props["got_revision"]; got != wantRev {
			t.Errorf("got_revision = %q, want %q", got, wantRev)
		}
		if !strings.Contains(string(b.stepLog(1)), "$ git ") {
			t.Errorf("the git step's log does not show its commands:\n%s", b.stepLog(1))
		}
	}

	// A fresh clone of the default branch.
	run(nil, "one\nversion.txt ", first)
	if _, err := os.Stat(filepath.Join(cfg.Basedir, "b", "build", ".git")); err != nil {
		t.Fatalf("the checkout is not in Basedir/<builder>/build: %v", err)
	}

	// A fetch into the existing clone; an untracked file is cleaned away.
	second := repo.commit("version.txt", "two\n")
	junk := filepath.Join(cfg.Basedir, "b", "build", "junk")
	if err := os.WriteFile(junk, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	run(map[string]string{"revision": second}, "two\nversion.txt ", second)

	// An older revision, then the head of a named branch.
	run(map[string]string{"revision": first}, "one\nversion.txt ", first)
	repo.git("checkout", "--quiet", "-b", "feature")
	third := repo.commit("version.txt", "three\n")
	repo.git("checkout", "--quiet", "main")
	run(map[string]string{"branch": "feature"}, "three\nversion.txt ", third)
	run(map[string]string{"branch": "refs/heads/main"}, "two\nversion.txt ", second)
}

// A revision or branch property that git could take for an option or an
// expression fails the git step with a reason, and runs nothing: the
// worker checks what reaches git even though the master checks it too.
// Abbreviated ids and tags still check out.
func TestGitStepRefusesHostileRevisions(t *testing.T) {
	t.Parallel()
	repo := newGitRepo(t)
	first := repo.commit("version.txt", "one\n")
	repo.git("tag", "v1.0")
	c, _, _ := newCluster(t)
	gitStep := config.Step{Kind: config.StepGit, Name: "checkout", RepoURL: repo.dir, HaltOnFailure: true}
	pwned := filepath.Join(t.TempDir(), "pwned")

	for _, props := range []map[string]string{
		{"revision": "--upload-pack=touch " + pwned},
		{"revision": "-h"},
		{"revision": "HEAD~1"},
		{"revision": "main:version.txt"},
		{"branch": "--orphan=x"},
		{"branch": "a..b"},
	} {
		a := newBuild(gitStep, shell("echo never"))
		a.Properties = props
		c.assign(a)
		b := c.waitFinished(a.BuildID, 30*time.Second)
		checkResult(t, b, build.Failure, "cannot be checked out")
		if len(b.steps) != 1 {
			t.Errorf("%v: %d steps ran, want only the refused checkout", props, len(b.steps))
		}
	}
	if _, err := os.Stat(pwned); err == nil {
		t.Fatal("a revision property ran a command through git")
	}

	for _, rev := range []string{first[:7], "v1.0"} {
		a := newBuild(gitStep, shell("cat version.txt"))
		a.Properties = map[string]string{"revision": rev}
		c.assign(a)
		b := c.waitFinished(a.BuildID, 30*time.Second)
		checkResult(t, b, build.Success, "")
		if got := b.steps[1].props["got_revision"]; got != first {
			t.Errorf("revision %q checked out %q, want %q", rev, got, first)
		}
	}
}

func TestRedactURL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"https://user:token@example.com/r.git": "https://user:xxxxx@example.com/r.git",
		"https://example.com/r.git":            "https://example.com/r.git",
		"/srv/git/repo":                        "/srv/git/repo",
		"--no-checkout":                        "--no-checkout",
	} {
		if got := redactURL(in); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestGitStepFailsOnBadRepository(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatalf("git is required: %v", err)
	}
	c, _, _ := newCluster(t)
	a := newBuild(
		config.Step{Kind: config.StepGit, RepoURL: filepath.Join(t.TempDir(), "missing")},
		shell("echo never"),
	)
	a.Steps[0].HaltOnFailure = true
	c.assign(a)
	b := c.waitFinished(a.BuildID, 30*time.Second)
	checkResult(t, b, build.Failure, "exit status")
	if len(b.steps) != 1 {
		t.Fatalf("%d steps reported, want only the failed checkout", len(b.steps))
	}
}

func TestUnknownStepKindIsAnException(t *testing.T) {
	t.Parallel()
	c, _, _ := newCluster(t)
	a := newBuild(config.Step{Kind: "teleport"}, shell("echo never"))
	c.assign(a)
	b := c.waitFinished(a.BuildID, 20*time.Second)
	checkResult(t, b, build.Exception, `unknown step kind "teleport"`)
	if len(b.steps) != 1 {
		t.Fatalf("%d steps reported, want 1: an exception ends the build", len(b.steps))
	}
}
