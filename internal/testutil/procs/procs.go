// Package procs starts real processes for tests, regent masters and
// workers above all, and lets a test signal, pause, kill and watch them.
//
// Each process's standard output and error go to files of their own, which
// [Proc.WaitForLine] polls and which are shown in the test log if the test
// fails. A process is started in a process group of its own; when its test
// ends, the group is killed. If the test process itself dies, the kernel
// kills the process too.
package procs

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/regent-ci/regent/internal/testutil"
)

// Sentinel errors of the waits.
var (
	// ErrTimeout means the wait's time ran out first.
	ErrTimeout = errors.New("timed out")
	// ErrExited means the process exited before printing the line waited
	// for.
	ErrExited = errors.New("process exited")
)

// How often output files are read while waiting for a line, and how much
// of each is shown when a test fails.
const (
	pollInterval = 20 * time.Millisecond
	logTailBytes = 32 << 10
	reapTimeout  = 10 * time.Second
)

// Spec says what process to start.
type Spec struct {
	// Name labels the process in messages and names its output files; the
	// program's base name if empty.
	Name string
	// Path is the program to run, such as [Regent]'s result.
	Path string
	// Args are the arguments after the program name.
	Args []string
	// Env is added to the test process's environment, as "KEY=value".
	Env []string
	// Dir is the working directory; the test process's if empty.
	Dir string
}

// Proc is a running or exited process started by [Start]. Its methods are
// safe for concurrent use.
type Proc struct {
	spec       Spec
	child      *testutil.Child
	stdoutPath string
	stderrPath string
}

// Start starts the process spec describes, for the test t. When t ends the
// process and its process group are killed, and, if t failed, the ends of
// its output are logged. A process that cannot be started fails t.
func Start(t testing.TB, spec Spec) *Proc {
	t.Helper()
	if spec.Name == "" {
		spec.Name = filepath.Base(spec.Path)
	}
	p, err := start(t.TempDir(), spec)
	if err != nil {
		t.Fatalf("procs: start %s: %v", spec.Name, err)
	}
	t.Cleanup(func() { p.cleanup(t) })
	return p
}

func start(dir string, spec Spec) (*Proc, error) {
	p := &Proc{
		spec:       spec,
		stdoutPath: filepath.Join(dir, spec.Name+".stdout"),
		stderrPath: filepath.Join(dir, spec.Name+".stderr"),
	}
	stdout, err := os.Create(p.stdoutPath)
	if err != nil {
		return nil, err
	}
	defer stdout.Close() // the child holds its own copy
	stderr, err := os.Create(p.stderrPath)
	if err != nil {
		return nil, err
	}
	defer stderr.Close()

	cmd := exec.Command(spec.Path, spec.Args...)
	cmd.Env = append(os.Environ(), spec.Env...)
	cmd.Dir = spec.Dir
	cmd.Stdout = stdout
	cmd.Stderr = stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p.child, err = testutil.StartChild(cmd, syscall.SIGKILL)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// cleanup kills what is left of the process's group, then shows its output
// if the test failed.
func (p *Proc) cleanup(t testing.TB) {
	// The group outlives its leader while any member lives, and its id is
	// not reused meanwhile, so this reaches only processes started here.
	_ = syscall.Kill(-p.PID(), syscall.SIGKILL)
	select {
	case <-p.child.Done():
	case <-time.After(reapTimeout):
		t.Errorf("procs: %s (pid %d) still not reaped %v after SIGKILL", p.spec.Name, p.PID(), reapTimeout)
	}
	if t.Failed() {
		t.Logf("procs: %s (pid %d) %s\n--- stdout (end) ---\n%s--- stderr (end) ---\n%s",
			p.spec.Name, p.PID(), p.status(), lastBytes(p.Stdout(), logTailBytes), lastBytes(p.Stderr(), logTailBytes))
	}
}

// Name returns the name the process was started under.
func (p *Proc) Name() string { return p.spec.Name }

// Spec returns what the process was started from; starting it again makes
// a new incarnation of the same process.
func (p *Proc) Spec() Spec { return p.spec }

// PID returns the process id.
func (p *Proc) PID() int { return p.child.PID() }

// Signal sends sig to the process. It returns [os.ErrProcessDone] if the
// process has exited.
func (p *Proc) Signal(sig os.Signal) error {
	err := p.child.Signal(sig)
	if err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal %s (pid %d) with %v: %w", p.spec.Name, p.PID(), sig, err)
	}
	return err
}

// Kill kills the process with SIGKILL, like a crash, and waits until it
// has exited. Other processes of its group are left alone.
func (p *Proc) Kill() error {
	if err := p.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	return p.waitReaped()
}

// Stop pauses the process with SIGSTOP, like a hang: it keeps its sockets
// and sessions open but does nothing until [Proc.Cont].
func (p *Proc) Stop() error { return p.Signal(syscall.SIGSTOP) }

// Cont resumes a process paused by [Proc.Stop].
func (p *Proc) Cont() error { return p.Signal(syscall.SIGCONT) }

// Done returns a channel closed once the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.child.Done() }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool { return p.child.Exited() }

// Wait waits at most timeout for the process to exit and returns its
// exit error: nil for status 0, an [*exec.ExitError] otherwise, or an error
// wrapping [ErrTimeout] if it is still running.
func (p *Proc) Wait(timeout time.Duration) error {
	select {
	case <-p.child.Done():
		return p.child.Err()
	case <-time.After(timeout):
		return fmt.Errorf("%s (pid %d) still running after %v: %w", p.spec.Name, p.PID(), timeout, ErrTimeout)
	}
}

// ExitCode returns the exit status, or -1 if the process is still running
// or was ended by a signal.
func (p *Proc) ExitCode() int {
	if !p.child.Exited() {
		return -1
	}
	var exitErr *exec.ExitError
	if errors.As(p.child.Err(), &exitErr) {
		return exitErr.ExitCode()
	}
	if p.child.Err() != nil {
		return -1
	}
	return 0
}

func (p *Proc) waitReaped() error {
	select {
	case <-p.child.Done():
		return nil
	case <-time.After(reapTimeout):
		return fmt.Errorf("%s (pid %d) not reaped %v after SIGKILL", p.spec.Name, p.PID(), reapTimeout)
	}
}

// status describes the process's state for messages.
func (p *Proc) status() string {
	if !p.child.Exited() {
		return "running"
	}
	if err := p.child.Err(); err != nil {
		return "ended: " + err.Error()
	}
	return "exited 0"
}

// StdoutPath returns the path of the file holding the standard output.
func (p *Proc) StdoutPath() string { return p.stdoutPath }

// StderrPath returns the path of the file holding the standard error.
func (p *Proc) StderrPath() string { return p.stderrPath }

// Stdout returns everything the process has written to standard output.
func (p *Proc) Stdout() string { return readAll(p.stdoutPath) }

// Stderr returns everything the process has written to standard error.
func (p *Proc) Stderr() string { return readAll(p.stderrPath) }

// WaitForLine waits at most timeout for a line holding substr on the
// process's standard output or error, and returns the line. It fails with
// an error wrapping [ErrExited] if the process exits first, or
// [ErrTimeout]. Lines printed before the call count.
func (p *Proc) WaitForLine(substr string, timeout time.Duration) (string, error) {
	m, err := p.waitFor(fmt.Sprintf("%q", substr), timeout, func(line string) []string {
		if strings.Contains(line, substr) {
			return []string{line}
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	return m[0], nil
}

// WaitForMatch is [Proc.WaitForLine] for a line matching re; it returns
// the match and its submatches, as [regexp.Regexp.FindStringSubmatch] does.
func (p *Proc) WaitForMatch(re *regexp.Regexp, timeout time.Duration) ([]string, error) {
	return p.waitFor("/"+re.String()+"/", timeout, re.FindStringSubmatch)
}

// waitFor polls the output files for a line that match accepts.
func (p *Proc) waitFor(what string, timeout time.Duration, match func(string) []string) ([]string, error) {
	deadline := time.Now().Add(timeout)
	for {
		// Read after checking for exit, so that the last read sees all.
		exited := p.child.Exited()
		for _, path := range []string{p.stdoutPath, p.stderrPath} {
			if m := scanLines(readAll(path), exited, match); m != nil {
				return m, nil
			}
		}
		if exited {
			return nil, fmt.Errorf("%s (pid %d) %s before printing a line with %s: %w",
				p.spec.Name, p.PID(), p.status(), what, ErrExited)
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s (pid %d) printed no line with %s in %v: %w",
				p.spec.Name, p.PID(), what, timeout, ErrTimeout)
		}
		select {
		case <-p.child.Done():
		case <-time.After(pollInterval):
		}
	}
}

// scanLines returns the first match among the complete lines of out, and
// of the unfinished last line too if final is set.
func scanLines(out string, final bool, match func(string) []string) []string {
	for out != "" {
		line, rest, complete := strings.Cut(out, "\n")
		if !complete && !final {
			return nil
		}
		if m := match(line); m != nil {
			return m
		}
		out = rest
	}
	return nil
}

func readAll(path string) string {
	data, _ := os.ReadFile(path)
	return string(data)
}

// lastBytes returns at most the last n bytes of s, from a line start.
func lastBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[len(s)-n:]
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return "...\n" + s
}
