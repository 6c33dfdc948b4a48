package changes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"
)

// maxStderr bounds how much of a git command's error output is kept for
// the error it returns; the tail is kept, since git ends with the cause.
const maxStderr = 8 << 10

// gitRunner runs git commands against one repository, each bounded by a
// timeout, with an environment that reads no user or system
// configuration and never prompts.
type gitRunner struct {
	gitDir  string
	env     []string
	timeout time.Duration
}

// newGitRunner returns a runner for the repository at gitDir. home is an
// empty directory that git may treat as the user's home; extra is added to
// the environment last, so it may override Regent's settings.
func newGitRunner(gitDir, home string, timeout time.Duration, extra []string) *gitRunner {
	return &gitRunner{gitDir: gitDir, env: gitEnv(home, extra), timeout: timeout}
}

// gitEnv builds git's environment from the process environment without
// any GIT_* variable (a GIT_DIR inherited from a hook would point git at
// the wrong repository) and without the user's configuration.
func gitEnv(home string, extra []string) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(name, "GIT_"), name == "HOME", name == "XDG_CONFIG_HOME",
			name == "LC_ALL", name == "LANGUAGE":
			continue
		}
		env = append(env, kv)
	}
	env = append(env,
		"HOME="+home,
		"XDG_CONFIG_HOME="+home,
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_TERMINAL_PROMPT=0",
		"LC_ALL=C",
	)
	if !hasVar(extra, "GIT_SSH") && !hasVar(extra, "GIT_SSH_COMMAND") {
		// BatchMode makes ssh fail instead of asking for a password or
		// a host key confirmation.
		env = append(env, "GIT_SSH_COMMAND=ssh -o BatchMode=yes")
	}
	return append(env, extra...)
}

// hasVar reports whether env sets the variable name.
func hasVar(env []string, name string) bool {
	for _, kv := range env {
		if strings.HasPrefix(kv, name+"=") {
			return true
		}
	}
	return false
}

// gitError is a git command that failed: which one, how, and what it said.
type gitError struct {
	cmd    string // the git subcommand, e.g. "fetch"
	err    error
	stderr string
}

func (e *gitError) Error() string {
	if e.stderr == "" {
		return fmt.Sprintf("git %s: %v", e.cmd, e.err)
	}
	return fmt.Sprintf("git %s: %v: %s", e.cmd, e.err, e.stderr)
}

func (e *gitError) Unwrap() error { return e.err }

// exitCode returns the exit status of a git command that ran and failed,
// or -1 when err is not such a failure.
func exitCode(err error) int {
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode()
	}
	return -1
}

// run runs git with args, feeding it stdin when not nil, and returns its
// standard output. When ctx ends or the timeout passes, git and every
// process it started are killed, and the error wraps ctx.Err() or says
// that the command timed out.
func (g *gitRunner) run(ctx context.Context, stdin io.Reader, args ...string) ([]byte, error) {
	return g.runWith(ctx, nil, stdin, args...)
}

// runWith is run with env added to git's environment.
func (g *gitRunner) runWith(ctx context.Context, env []string, stdin io.Reader, args ...string) ([]byte, error) {
	runCtx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()

	full := append([]string{"--git-dir=" + g.gitDir}, args...)
	cmd := exec.CommandContext(runCtx, "git", full...)
	cmd.Env = append(slices.Clip(g.env), env...)
	cmd.Stdin = stdin
	var stdout bytes.Buffer
	stderr := &tailBuffer{max: maxStderr}
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	ownProcessGroup(cmd)
	// Processes git started (ssh, upload-pack) may hold the output pipes
	// open after git is killed; stop waiting for them after a while.
	cmd.WaitDelay = 2 * time.Second

	err := cmd.Run()
	if err == nil {
		return stdout.Bytes(), nil
	}
	name := subcommand(args)
	switch {
	case ctx.Err() != nil:
		return nil, fmt.Errorf("git %s: %w", name, ctx.Err())
	case runCtx.Err() != nil:
		return nil, &gitError{cmd: name, err: fmt.Errorf("timed out after %v", g.timeout),
			stderr: stderr.String()}
	}
	return nil, &gitError{cmd: name, err: err, stderr: stderr.String()}
}

// subcommand returns the first argument that is neither an option nor
// the value of a -c option.
func subcommand(args []string) string {
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "-c":
			i++
		case !strings.HasPrefix(a, "-"):
			return a
		}
	}
	return "?"
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	buf []byte
	cut bool
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
		t.cut = true
	}
	return len(p), nil
}

// String returns the kept output on one line, trimmed.
func (t *tailBuffer) String() string {
	var lines []string
	for _, l := range strings.Split(string(bytes.ToValidUTF8(t.buf, []byte("\uFFFD"))), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	s := strings.Join(lines, "; ")
	if t.cut {
		s = "..." + s
	}
	return s
}
