package worker

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/regent-ci/regent/internal/build"
	"github.com/regent-ci/regent/internal/config"
	"github.com/regent-ci/regent/internal/gitref"
)

// gitStep checks the step's repository out into the build directory:
//
//   - clone it when the directory holds no repository, else fetch every
//     branch of origin (its URL updated to the step's);
//   - check out, detached and forced, the build property "revision" when
//     set, else the fetched head of the property "branch", else the
//     remote's default branch;
//   - remove everything git does not track (git clean -ffdx).
//
// Each git command is echoed to the step's log before its output. The
// checked-out commit is returned as the property "got_revision".
func (b *buildRun) gitStep(st config.Step, secrets map[string]string, sp *spool,
	deadline time.Time) (outcome, map[string]string) {
	if st.RepoURL == "" {
		return outcome{build.Exception, "the git step has no repository URL"}, nil
	}
	g := gitRunner{b: b, st: st, secrets: secrets, sp: sp, deadline: deadline}

	if _, err := os.Stat(filepath.Join(b.dir, ".git")); err != nil {
		if err := os.RemoveAll(b.dir); err != nil {
			return outcome{build.Exception, fmt.Sprintf("empty build directory: %v", err)}, nil
		}
		parent := filepath.Dir(b.dir)
		if o := g.run(parent, "clone", "--no-checkout", "--", st.RepoURL, b.dir); !o.ok() {
			return o, nil
		}
	} else {
		if o := g.run(b.dir, "remote", "set-url", "origin", st.RepoURL); !o.ok() {
			return o, nil
		}
		o := g.run(b.dir, "fetch", "--force", "--prune", "origin",
			"+refs/heads/*:refs/remotes/origin/*")
		if !o.ok() {
			return o, nil
		}
	}

	target, o := g.target()
	if !o.ok() {
		return o, nil
	}
	if o := g.run(b.dir, "-c", "advice.detachedHead=false", "checkout", "--force", "--detach",
		target, "--"); !o.ok() {
		return o, nil
	}
	if o := g.run(b.dir, "clean", "-ffdx"); !o.ok() {
		return o, nil
	}

	var props map[string]string
	if rev, err := g.output("rev-parse", "HEAD"); err == nil {
		props = map[string]string{"got_revision": rev}
	}
	return outcome{result: build.Success}, props
}

// gitRunner runs the git commands of one step under the step's limits.
type gitRunner struct {
	b        *buildRun
	st       config.Step
	secrets  map[string]string
	sp       *spool
	deadline time.Time
}

// target returns what to check out, fetching a revision that no branch
// holds when the server allows it.
func (g gitRunner) target() (string, outcome) {
	props := g.b.props
	// The properties come from outside (a webhook, a forced build): the
	// master checks them, and so does the worker, so that nothing a git
	// command could take for an option or an expression reaches it.
	if rev := props["revision"]; rev != "" {
		if why := gitref.RevisionProblem(rev); why != "" {
			return "", outcome{build.Failure, fmt.Sprintf("the property revision %q cannot be "+
				"checked out: %s", rev, why)}
		}
		if _, err := g.output("cat-file", "-e", "--end-of-options", rev+"^{commit}"); err != nil {
			if o := g.run(g.b.dir, "fetch", "--end-of-options", "origin", rev); !o.ok() {
				return "", o
			}
		}
		return rev, outcome{result: build.Success}
	}
	if branch := strings.TrimPrefix(props["branch"], "refs/heads/"); branch != "" {
		if why := gitref.BranchProblem(branch); why != "" {
			return "", outcome{build.Failure, fmt.Sprintf("the property branch %q cannot be "+
				"checked out: %s", branch, why)}
		}
		return "refs/remotes/origin/" + branch, outcome{result: build.Success}
	}
	if o := g.run(g.b.dir, "remote", "set-head", "origin", "--auto"); !o.ok() {
		return "", o
	}
	return "refs/remotes/origin/HEAD", outcome{result: build.Success}
}

// run runs one git command with its output in the step's log.
func (g gitRunner) run(dir string, args ...string) outcome {
	shown := make([]string, len(args))
	for i, a := range args {
		shown[i] = redactURL(a)
	}
	fmt.Fprintf(g.sp, "$ git %s\n", strings.Join(shown, " "))
	return process{
		args:     append([]string{"git"}, args...),
		dir:      dir,
		env:      append(g.b.env(g.st, g.secrets), "GIT_TERMINAL_PROMPT=0"),
		out:      g.sp,
		deadline: g.deadline,
		timeout:  g.st.Timeout.D(),
		silence:  g.st.NoOutputTimeout.D(),
		grace:    g.b.w.cfg.KillGrace,
	}.run(g.b.exec)
}

// output runs a quick, local git query and returns its trimmed output.
func (g gitRunner) output(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(g.b.exec, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = g.b.dir
	cmd.Env = append(g.b.env(g.st, g.secrets), "GIT_TERMINAL_PROMPT=0")
	out, err := cmd.Output()
	return strings.TrimSpace(string(out)), err
}

// redactURL hides the password of a URL with credentials, so that the
// command lines echoed to the log do not show it.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	return u.Redacted()
}
