package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/regent-ci/regent/internal/build"
)

// drainTimeout bounds how long output is still read after a step's process
// group is gone: a process that escaped the group (a daemon that called
// setsid) may hold the pipe open for ever.
const drainTimeout = 2 * time.Second

// process describes one command run for a step.
type process struct {
	args []string
	dir  string
	env  []string
	out  *spool
	// stdout, when set, receives the command's standard output as well
	// as the spool; stdout then has a pipe of its own, so its order
	// against standard error in the log is only as close as the reads.
	stdout io.Writer
	// deadline is when the step's total time runs out (zero: never);
	// timeout is that total time, for the reason shown to users.
	deadline time.Time
	timeout  time.Duration
	// silence is the longest the command may go without output (0: any).
	silence time.Duration
	grace   time.Duration
}

// outcome is how a step or one of its commands ended.
type outcome struct {
	result string
	reason string
}

func (o outcome) ok() bool { return build.OK(o.result) }

// run starts the command in its own process group with stdout and stderr
// merged into the spool, and waits for it. When the deadline passes, the
// command is silent too long, or ctx ends, the whole group gets SIGTERM
// and, after the grace period, SIGKILL. Whatever the group leaves behind
// when the command exits is killed too, so that a step never outlives
// itself.
func (p process) run(ctx context.Context) outcome {
	pipes, err := p.pipes()
	if err != nil {
		return outcome{build.Exception, fmt.Sprintf("create output pipe: %v", err)}
	}
	cmd := exec.Command(p.args[0], p.args[1:]...)
	cmd.Dir = p.dir
	cmd.Env = p.env
	cmd.Stdout = pipes[0].w
	cmd.Stderr = pipes[len(pipes)-1].w
	cmd.SysProcAttr = stepProcAttr()
	err = cmd.Start()
	for _, pp := range pipes {
		pp.w.Close()
	}
	if err != nil {
		for _, pp := range pipes {
			pp.r.Close()
		}
		return outcome{build.Exception, fmt.Sprintf("start %s: %v", p.args[0], err)}
	}
	pgid := cmd.Process.Pid

	var copied sync.WaitGroup
	for _, pp := range pipes {
		copied.Add(1)
		go func() {
			defer copied.Done()
			copyOutput(pp.dst, pp.r)
		}()
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	killedFor := p.supervise(ctx, pgid, exited)

	// The leader is gone; end the rest of its group, then read what is
	// left in the pipes.
	signalGroup(pgid, syscall.SIGKILL)
	for _, pp := range pipes {
		pp.r.SetReadDeadline(time.Now().Add(drainTimeout))
	}
	copied.Wait()
	for _, pp := range pipes {
		pp.r.Close()
	}

	if killedFor.result != "" {
		return killedFor
	}
	return exitOutcome(cmd.ProcessState)
}

// outputPipe is a pipe from the command and where its output goes.
type outputPipe struct {
	r, w *os.File
	dst  io.Writer
}

// pipes returns one pipe for standard output and error merged into the
// spool, or, when p.stdout is set, one for standard output and one for
// standard error.
func (p process) pipes() ([]outputPipe, error) {
	n, dsts := 1, []io.Writer{p.out}
	if p.stdout != nil {
		n, dsts = 2, []io.Writer{io.MultiWriter(p.out, p.stdout), p.out}
	}
	var out []outputPipe
	for i := range n {
		r, w, err := os.Pipe()
		if err != nil {
			for _, pp := range out {
				pp.r.Close()
				pp.w.Close()
			}
			return nil, err
		}
		out = append(out, outputPipe{r: r, w: w, dst: dsts[i]})
	}
	return out, nil
}

// supervise waits for the command to exit and stops its group when a
// limit is reached or ctx ends. It returns why the group was stopped, or
// a zero outcome when the command exited by itself.
func (p process) supervise(ctx context.Context, pgid int, exited <-chan error) outcome {
	var total, quiet, kill <-chan time.Time
	if !p.deadline.IsZero() {
		t := time.NewTimer(time.Until(p.deadline))
		defer t.Stop()
		total = t.C
	}
	var quietTimer *time.Timer
	if p.silence > 0 {
		quietTimer = time.NewTimer(p.silence)
		defer quietTimer.Stop()
		quiet = quietTimer.C
	}
	done := ctx.Done()

	var why outcome
	var killTimer *time.Timer
	defer func() {
		if killTimer != nil {
			killTimer.Stop()
		}
	}()
	stop := func(o outcome) {
		why = o
		total, quiet, done = nil, nil, nil
		signalGroup(pgid, syscall.SIGTERM)
		killTimer = time.NewTimer(p.grace)
		kill = killTimer.C
	}
	for {
		select {
		case <-exited:
			return why
		case <-total:
			stop(outcome{build.Failure, fmt.Sprintf("timed out after %s", p.timeout)})
		case <-quiet:
			if idle := time.Since(p.out.lastActive()); idle < p.silence {
				quietTimer.Reset(p.silence - idle)
				continue
			}
			stop(outcome{build.Failure, fmt.Sprintf("no output for %s", p.silence)})
		case <-done:
			stop(stoppedOutcome(context.Cause(ctx)))
		case <-kill:
			kill = nil
			signalGroup(pgid, syscall.SIGKILL)
		}
	}
}

// stoppedOutcome says how a step ends that was stopped for cause.
func stoppedOutcome(cause error) outcome {
	if errors.Is(cause, errCancelled) {
		return outcome{build.Cancelled, "cancelled"}
	}
	return outcome{build.Exception, fmt.Sprintf("stopped: %v", cause)}
}

// exitOutcome turns a finished command's status into a step outcome.
func exitOutcome(st *os.ProcessState) outcome {
	if st.Success() {
		return outcome{result: build.Success}
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return outcome{build.Failure, fmt.Sprintf("killed by signal %s", ws.Signal())}
	}
	return outcome{build.Failure, fmt.Sprintf("exit status %d", st.ExitCode())}
}

// signalGroup sends sig to every process in the group; a group that is
// already gone is not an error.
func signalGroup(pgid int, sig syscall.Signal) {
	_ = syscall.Kill(-pgid, sig)
}

// copyOutput moves output from the pipe to the spool until the pipe is
// closed or its read deadline passes.
func copyOutput(dst io.Writer, src io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			dst.Write(buf[:n])
		}
		if err != nil {
			return
		}
	}
}
