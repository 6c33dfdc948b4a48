package worker

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/regent-ci/regent/internal/build"
)

// keepersSupported: Linux has child subreapers, pidfds and /proc.
const keepersSupported = true

// keeperSlack is how much longer than the grace period and the keeper's
// own SIGKILL rounds the worker waits for a stopped keeper before killing
// it: a keeper that hangs must not hang the step.
const keeperSlack = 2 * time.Second

// keptCommand is a step's command run under a keeper (see keeper.go).
// The worker deals with the keeper alone: it signals only the keeper's
// pid, through the pidfd Go keeps for a started process, so a signal
// never reaches a reused pid.
type keptCommand struct {
	name   string
	cmd    *exec.Cmd
	status *os.File // the read end of the keeper's status pipe
}

// startKept starts a keeper for the command. The keeper is this program
// run again, in a process group of its own, with the step's directory and
// environment, which its command inherits; the program is looked up as
// exec.Command does, with the worker's PATH.
func (p process) startKept(stdout, stderr *os.File) (stepCommand, error) {
	path := p.args[0]
	if !strings.Contains(path, "/") {
		found, err := exec.LookPath(path)
		if err != nil {
			return nil, err
		}
		path = found
	}
	statusR, statusW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("create keeper status pipe: %w", err)
	}
	args := append([]string{p.grace.String(), path}, p.args...)
	cmd := exec.Command("/proc/self/exe", args...)
	cmd.Args[0] = "regent-step-keeper"
	cmd.Dir = p.dir
	cmd.Env = append(p.env[:len(p.env):len(p.env)], keeperEnv+"=1")
	cmd.Stdout = stdout
	cmd.Stderr = stderr
	cmd.ExtraFiles = []*os.File{statusW} // descriptor 3 in the keeper
	// Pdeathsig fires when the thread that started the keeper ends; Go
	// ends a thread only under a goroutine that exits locked to it, which
	// the worker never does, so in practice it is the end of the worker.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	err = cmd.Start()
	statusW.Close()
	if err != nil {
		statusR.Close()
		// Name the step's program, not the keeper, as a direct start does.
		var pe *os.PathError
		if errors.As(err, &pe) {
			return nil, &os.PathError{Op: pe.Op, Path: path, Err: pe.Err}
		}
		return nil, err
	}
	return keptCommand{name: p.args[0], cmd: cmd, status: statusR}, nil
}

// wait waits for the keeper, which ends once the command's whole tree is
// gone, and reads the command's status from it.
func (k keptCommand) wait() outcome {
	waitErr := k.cmd.Wait()
	report, err := io.ReadAll(k.status)
	k.status.Close()
	if err == nil {
		if o, ok := keeperOutcome(k.name, string(report)); ok {
			return o
		}
	}
	return outcome{build.Exception, fmt.Sprintf("the step keeper ended without a status: %v", waitErr)}
}

// keeperOutcome decodes a keeper's report: "status N" with the command's
// wait status, or "error TEXT" when the command could not be started.
func keeperOutcome(name, report string) (outcome, bool) {
	kind, text, _ := strings.Cut(strings.TrimSuffix(report, "\n"), " ")
	switch kind {
	case "status":
		ws, err := strconv.ParseUint(text, 10, 32)
		if err != nil {
			return outcome{}, false
		}
		return waitOutcome(syscall.WaitStatus(ws)), true
	case "error":
		return outcome{build.Exception, fmt.Sprintf("start %s: %s", name, text)}, true
	}
	return outcome{}, false
}

// terminate has the keeper stop the tree: SIGTERM, then SIGKILL after the
// grace period it was given.
func (k keptCommand) terminate() { _ = k.cmd.Process.Signal(syscall.SIGTERM) }

// kill kills a keeper that did not end in time. Its tree, if any is left,
// is then out of reach.
func (k keptCommand) kill() { _ = k.cmd.Process.Kill() }

func (k keptCommand) killDelay(grace time.Duration) time.Duration {
	return grace + keeperKillWait + keeperSlack
}

// cleanup has nothing to do: the keeper ends after the tree.
func (k keptCommand) cleanup() {}

// stepProcAttr puts a command run without a keeper in a process group of
// its own, and has the kernel kill it when the worker dies (even by
// SIGKILL), as for a keeper above. Its own children are not reached that
// way: that is what keepers are for.
func stepProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
