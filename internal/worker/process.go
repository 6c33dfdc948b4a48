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

// drainTimeout bounds how long output is still read after a step's
// command and what it started are gone: a process that escaped (a daemon
// of a command run without a keeper) may hold the pipe open for ever.
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

// stepCommand is a step's command once started: under a keeper (see
// keeper.go), or directly in a process group of its own.
type stepCommand interface {
	// wait waits until the command has exited and says how it ended.
	wait() outcome
	// terminate asks the command and everything it started to end.
	terminate()
	// kill ends them at once; supervise calls it killDelay(grace) after
	// terminate.
	kill()
	killDelay(grace time.Duration) time.Duration
	// cleanup ends what the command left running once it has exited.
	cleanup()
}

// run starts the command with stdout and stderr merged into the spool,
// and waits for it. When the deadline passes, the command is silent too
// long, or ctx ends, the command and everything it started get SIGTERM
// and, after the grace period, SIGKILL. Whatever the command leaves
// running when it exits is killed too, so that a step never outlives
// itself.
func (p process) run(ctx context.Context) outcome {
	return p.runWith(ctx, p.start)
}

// starter starts a step's command with the given standard output and
// error.
type starter func(stdout, stderr *os.File) (stepCommand, error)

// runWith is run, starting the command with start.
func (p process) runWith(ctx context.Context, start starter) outcome {
	pipes, err := p.pipes()
	if err != nil {
		return outcome{build.Exception, fmt.Sprintf("create output pipe: %v", err)}
	}
	c, err := start(pipes[0].w, pipes[len(pipes)-1].w)
	for _, pp := range pipes {
		pp.w.Close()
	}
	if err != nil {
		for _, pp := range pipes {
			pp.r.Close()
		}
		return outcome{build.Exception, fmt.Sprintf("start %s: %v", p.args[0], err)}
	}

	var copied sync.WaitGroup
	for _, pp := range pipes {
		copied.Add(1)
		go func() {
			defer copied.Done()
			copyOutput(pp.dst, pp.r)
		}()
	}
	exited := make(chan outcome, 1)
	go func() { exited <- c.wait() }()

	o := p.supervise(ctx, c, exited)

	// End what the command left behind, then read what is left in the
	// pipes.
	c.cleanup()
	for _, pp := range pipes {
		pp.r.SetReadDeadline(time.Now().Add(drainTimeout))
	}
	copied.Wait()
	for _, pp := range pipes {
		pp.r.Close()
	}
	return o
}

// start starts the command under a keeper when the program can run one,
// and directly otherwise.
func (p process) start(stdout, stderr *os.File) (stepCommand, error) {
	if keepersEnabled.Load() {
		return p.startKept(stdout, stderr)
	}
	return p.startDirect(stdout, stderr)
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

// supervise waits for the command to exit and stops it when a limit is
// reached or ctx ends. It returns why the command was stopped, or how it
// ended when it exited by itself.
func (p process) supervise(ctx context.Context, c stepCommand, exited <-chan outcome) outcome {
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
		c.terminate()
		killTimer = time.NewTimer(c.killDelay(p.grace))
		kill = killTimer.C
	}
	for {
		select {
		case o := <-exited:
			if why.result != "" {
				return why
			}
			return o
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
			c.kill()
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

// waitOutcome turns an exited command's wait status into a step outcome.
func waitOutcome(ws syscall.WaitStatus) outcome {
	switch {
	case ws.Signaled():
		return outcome{build.Failure, fmt.Sprintf("killed by signal %s", ws.Signal())}
	case ws.ExitStatus() == 0:
		return outcome{result: build.Success}
	}
	return outcome{build.Failure, fmt.Sprintf("exit status %d", ws.ExitStatus())}
}

// directCommand is a command run without a keeper, in a process group of
// its own: terminate and kill reach the group, and so does cleanup once
// the command has exited. A process that left the group (setsid, a
// daemon) is out of reach, and, outside Linux, a worker that dies leaves
// the whole group running.
type directCommand struct {
	cmd *exec.Cmd
}

// startDirect starts the command in a process group of its own.
func (p process) startDirect(stdout, stderr *os.File) (stepCommand, error) {
	cmd := exec.Command(p.args[0], p.args[1:]...)
	cmd.Dir = p.dir
	cmd.Env = p.env
	cmd.Stdout = stdout
	cmd.Stderr = stderr
	cmd.SysProcAttr = stepProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return directCommand{cmd}, nil
}

func (d directCommand) wait() outcome {
	err := d.cmd.Wait()
	if st := d.cmd.ProcessState; st != nil {
		if ws, ok := st.Sys().(syscall.WaitStatus); ok {
			return waitOutcome(ws)
		}
	}
	return outcome{build.Exception, fmt.Sprintf("wait for %s: %v", d.cmd.Path, err)}
}

func (d directCommand) terminate() { signalGroup(d.cmd.Process.Pid, syscall.SIGTERM) }

func (d directCommand) kill() { signalGroup(d.cmd.Process.Pid, syscall.SIGKILL) }

func (d directCommand) killDelay(grace time.Duration) time.Duration { return grace }

// cleanup kills the rest of the group. The group's id is not reused
// while any member lives, so this reaches only the step's processes.
func (d directCommand) cleanup() { signalGroup(d.cmd.Process.Pid, syscall.SIGKILL) }

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
