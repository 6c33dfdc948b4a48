package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/regent-ci/regent/internal/testutil"
)

// ErrExited means a process exited before doing what was waited for.
var ErrExited = errors.New("process exited")

// How often output files and APIs are looked at while waiting.
const pollEvery = 20 * time.Millisecond

// Lab is the working directory of one workload and the processes started
// in it. Close ends every process that is still running and removes the
// directory.
type Lab struct {
	// Dir holds the lab's files and the processes' output.
	Dir string
	log *slog.Logger

	mu    sync.Mutex
	procs []*Proc
}

// NewLab makes a lab in a new directory under parent.
func NewLab(parent, name string, log *slog.Logger) (*Lab, error) {
	dir, err := os.MkdirTemp(parent, name+"-")
	if err != nil {
		return nil, fmt.Errorf("make lab %s: %w", name, err)
	}
	// As root, PostgreSQL and its tools run as another user that must be
	// able to enter the directory.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, fmt.Errorf("make lab %s: %w", name, err)
	}
	return &Lab{Dir: dir, log: log.With("lab", name)}, nil
}

// Path returns a path inside the lab's directory.
func (l *Lab) Path(elem ...string) string {
	return filepath.Join(append([]string{l.Dir}, elem...)...)
}

// Close kills what is left of every process started in the lab, each
// with its process group, and removes the lab's directory.
func (l *Lab) Close() {
	l.mu.Lock()
	procs := l.procs
	l.procs = nil
	l.mu.Unlock()
	for _, p := range procs {
		p.killGroup()
	}
	if err := os.RemoveAll(l.Dir); err != nil {
		l.log.Warn("cannot remove lab directory", "dir", l.Dir, "err", err)
	}
}

// Proc is a process started by [Lab.Start], leader of a process group of
// its own. If the harness dies, the kernel kills it.
type Proc struct {
	// Name labels the process in messages and names its output files.
	Name   string
	child  *testutil.Child
	stdout string
	stderr string
}

// Start starts path with args in the lab, its output going to files named
// after name, in dir (the lab's directory if empty), with env added to
// the harness's environment.
func (l *Lab) Start(name, path string, args, env []string, dir string) (*Proc, error) {
	p := &Proc{Name: name, stdout: l.Path(name + ".stdout"), stderr: l.Path(name + ".stderr")}
	stdout, err := os.OpenFile(p.stdout, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	defer stdout.Close() // the child has its own copy
	stderr, err := os.OpenFile(p.stderr, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	defer stderr.Close()

	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Dir = dir
	if dir == "" {
		cmd.Dir = l.Dir
	}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p.child, err = testutil.StartChild(cmd, syscall.SIGKILL)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	l.log.Debug("process started", "name", name, "pid", p.PID())
	return p, nil
}

// PID returns the process id.
func (p *Proc) PID() int { return p.child.PID() }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool { return p.child.Exited() }

// Kill kills the process alone with SIGKILL, like a crash, and waits
// until it has been reaped.
func (p *Proc) Kill() error {
	if err := p.child.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill %s: %w", p.Name, err)
	}
	select {
	case <-p.child.Done():
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s (pid %d) not reaped 10s after SIGKILL", p.Name, p.PID())
	}
}

// Stop pauses the process with SIGSTOP, like a hang.
func (p *Proc) Stop() error { return p.signal(syscall.SIGSTOP) }

// Cont resumes a process paused by Stop.
func (p *Proc) Cont() error { return p.signal(syscall.SIGCONT) }

// Terminate asks the process to exit with SIGTERM and kills its group if
// it has not within timeout.
func (p *Proc) Terminate(timeout time.Duration) {
	if p.signal(syscall.SIGTERM) != nil {
		return
	}
	select {
	case <-p.child.Done():
	case <-time.After(timeout):
		p.killGroup()
	}
}

func (p *Proc) signal(sig syscall.Signal) error {
	if err := p.child.Signal(sig); err != nil {
		return fmt.Errorf("signal %s (pid %d) with %v: %w", p.Name, p.PID(), sig, err)
	}
	return nil
}

// killGroup kills the process's group while its leader is still ours: a
// group id is not reused while any member lives, and the leader is not
// reaped yet, so the signal reaches only processes started here.
func (p *Proc) killGroup() {
	if p.child.Exited() {
		return
	}
	_ = syscall.Kill(-p.PID(), syscall.SIGCONT) // a paused group cannot die otherwise
	_ = syscall.Kill(-p.PID(), syscall.SIGKILL)
	select {
	case <-p.child.Done():
	case <-time.After(10 * time.Second):
	}
}

// Output returns what the process has written to standard output and
// error.
func (p *Proc) Output() string {
	out, _ := os.ReadFile(p.stdout)
	errOut, _ := os.ReadFile(p.stderr)
	return string(out) + string(errOut)
}

// Tail returns the end of the process's output, for error messages.
func (p *Proc) Tail() string {
	out := p.Output()
	if len(out) > 4000 {
		out = "..." + out[len(out)-4000:]
	}
	return out
}

// WaitForLine waits until the process's output holds substr, at most
// timeout; it fails early if the process exits.
func (p *Proc) WaitForLine(ctx context.Context, substr string, timeout time.Duration) error {
	return p.WaitForFile(ctx, "", substr, timeout)
}

// WaitForFile waits until the file at path, or the process's output if
// path is empty, holds substr, at most timeout; it fails early if the
// process exits.
func (p *Proc) WaitForFile(ctx context.Context, path, substr string, timeout time.Duration) error {
	read := func() string {
		if path == "" {
			return p.Output()
		}
		data, _ := os.ReadFile(path)
		return string(data)
	}
	return poll(ctx, timeout, func() (bool, error) {
		exited := p.Exited()
		if strings.Contains(read(), substr) {
			return true, nil
		}
		if exited {
			return false, fmt.Errorf("%s (pid %d) exited before printing %q: %w\n%s",
				p.Name, p.PID(), substr, ErrExited, p.Tail())
		}
		return false, nil
	})
}

// Memory is a process's resident memory, from /proc/PID/status.
type Memory struct {
	// RSSKiB is the resident set now, PeakKiB its high-water mark
	// (VmHWM) over the process's life.
	RSSKiB  int64
	PeakKiB int64
}

// Memory reads the process's resident memory now and at its peak.
func (p *Proc) Memory() (Memory, error) { return readMemory(p.PID()) }

func readMemory(pid int) (Memory, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Memory{}, fmt.Errorf("read memory of pid %d: %w", pid, err)
	}
	var m Memory
	for _, line := range strings.Split(string(data), "\n") {
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		kib, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(val), " kB"), 10, 64)
		if err != nil {
			continue
		}
		switch key {
		case "VmRSS":
			m.RSSKiB = kib
		case "VmHWM":
			m.PeakKiB = kib
		}
	}
	return m, nil
}

// runCommand runs a short command to completion and returns its output,
// or an error holding the output.
func runCommand(ctx context.Context, dir string, env []string, path string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w\n%s", filepath.Base(path), strings.Join(args, " "), err, out.String())
	}
	return out.String(), nil
}

// poll calls cond every pollEvery until it reports done or fails, the
// timeout passes, or ctx ends.
func poll(ctx context.Context, timeout time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		done, err := cond()
		if err != nil || done {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("still waiting after %v", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pollEvery):
		}
	}
}
