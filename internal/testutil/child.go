package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"
)

// Child is a process started by [StartChild].
type Child struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// StartChild starts cmd. If deathSignal is not zero, the kernel sends it
// to the child when the test process dies, so that a test killed by its
// time-out leaves no server or master behind. cmd.SysProcAttr may hold
// other settings; its Pdeathsig is overwritten.
//
// The child is started from a goroutine that keeps its OS thread until the
// child is reaped: the kernel sends the signal when the thread that forked
// the child ends, not the process, and Go may end an idle thread.
func StartChild(cmd *exec.Cmd, deathSignal syscall.Signal) (*Child, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = deathSignal

	c := &Child{cmd: cmd, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		c.err = cmd.Wait()
		close(c.done)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	return c, nil
}

// PID returns the child's process id.
func (c *Child) PID() int { return c.cmd.Process.Pid }

// Done returns a channel closed once the child has exited and been reaped.
func (c *Child) Done() <-chan struct{} { return c.done }

// Exited reports whether the child has exited and been reaped.
func (c *Child) Exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// Err returns what waiting for the child gave: nil for exit status 0, an
// *exec.ExitError otherwise. It is valid once Done is closed.
func (c *Child) Err() error { return c.err }

// Signal sends sig to the child. It returns [os.ErrProcessDone] once the
// child has exited, and never reaches another process that reused its id.
func (c *Child) Signal(sig os.Signal) error { return c.cmd.Process.Signal(sig) }
