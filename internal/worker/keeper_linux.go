package worker

import (
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// keeperStatusFD is the keeper's end of its status pipe: the worker's
// first Cmd.ExtraFiles.
const keeperStatusFD = 3

// keeperKillWait bounds how long a keeper keeps killing: a process that
// survives SIGKILL that long is stuck in the kernel, and the keeper gives
// up on it rather than hold the step for ever.
const keeperKillWait = 5 * time.Second

// keeperPassInterval is the pause between two passes over the tree while
// the keeper waits for it to die.
const keeperPassInterval = 10 * time.Millisecond

// keeper is the state of a keeper process: the command it started and
// what it learns about its children.
type keeper struct {
	self   int // the keeper's pid, the root of the tree
	parent int // the worker's pid, while the worker lives
	grace  time.Duration
	sigs   <-chan os.Signal

	// cmdDone receives the command's wait status when it is reaped;
	// childless is closed once the keeper has no child left.
	cmdDone   chan syscall.WaitStatus
	childless chan struct{}
}

// runKeeper is the keeper's main, with args "GRACE PATH ARGV0 ARGS...".
// It returns the keeper's exit status; the command's status goes to the
// status pipe.
func runKeeper(args []string) int {
	// The command must not inherit the status pipe: the worker reads it
	// to its end once the keeper has exited.
	syscall.CloseOnExec(keeperStatusFD)
	status := os.NewFile(keeperStatusFD, "keeper status")
	defer status.Close()

	// From here on the worker's death is a message, not the end. (Had it
	// died before, the default action of SIGTERM ended this process
	// before it started anything.) SIGPIPE is caught, not ignored, so
	// that the command does not inherit an ignored SIGPIPE, and a write
	// to the log of a dead worker cannot end the keeper.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	k := &keeper{
		self:      os.Getpid(),
		parent:    os.Getppid(),
		sigs:      sigs,
		cmdDone:   make(chan syscall.WaitStatus, 1),
		childless: make(chan struct{}),
	}

	grace, err := keeperArgs(args)
	if err != nil {
		fmt.Fprintf(status, "error %v\n", err)
		fmt.Fprintf(os.Stderr, "regent: %v (%s is set: this process was started as a step "+
			"keeper)\n", err, keeperEnv)
		return 2
	}
	k.grace = grace
	if err := k.start(args[1], args[2:]); err != nil {
		fmt.Fprintf(status, "error %v\n", err)
		return 1
	}

	ws, ok := k.watch()
	if !ok {
		return 1
	}
	fmt.Fprintf(status, "status %d\n", uint32(ws))
	return 0
}

// keeperArgs checks a keeper's arguments and returns the grace period.
func keeperArgs(args []string) (time.Duration, error) {
	if len(args) < 3 {
		return 0, fmt.Errorf("step keeper started with %d arguments, want at least 3", len(args))
	}
	grace, err := time.ParseDuration(args[0])
	if err != nil {
		return 0, fmt.Errorf("step keeper grace period: %w", err)
	}
	return grace, nil
}

// start makes the keeper a child subreaper and starts the command with
// the keeper's directory, descriptors 0 to 2 and environment, less
// keeperEnv. Then it starts reaping.
func (k *keeper) start(path string, argv []string) error {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("make the step keeper a child subreaper: %w", err)
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, keeperEnv+"=") {
			env = append(env, kv)
		}
	}
	// Should the keeper die after all (a SIGKILL), the command goes with
	// it rather than run on unseen.
	pid, err := syscall.ForkExec(path, argv, &syscall.ProcAttr{
		Env:   env,
		Files: []uintptr{0, 1, 2},
		Sys:   &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL},
	})
	if err != nil {
		return &os.PathError{Op: "fork/exec", Path: path, Err: err}
	}
	go k.reap(pid)
	return nil
}

// reap waits for every child of the keeper, the command and every orphan
// of its tree, and hands on the command's status. It closes childless
// when no child is left: on a subreaper, none can appear after that, as
// the keeper starts nothing more.
func (k *keeper) reap(cmd int) {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, 0, nil)
		switch {
		case err == syscall.EINTR:
		case err != nil:
			close(k.childless)
			return
		case pid == cmd:
			k.cmdDone <- ws
		}
	}
}

// watch waits for the command to exit or an order to stop, ends the
// tree, and returns the command's status, if it could be had.
func (k *keeper) watch() (syscall.WaitStatus, bool) {
	var graceOver <-chan time.Time
	for {
		select {
		case ws := <-k.cmdDone:
			k.killTree()
			return ws, true
		case <-k.sigs:
			if os.Getppid() != k.parent {
				// Pdeathsig: the worker is gone; nobody waits for a
				// graceful end.
				k.killTree()
				return k.status()
			}
			if graceOver == nil {
				k.signalTree(syscall.SIGTERM)
				t := time.NewTimer(k.grace)
				defer t.Stop()
				graceOver = t.C
			}
		case <-graceOver:
			k.killTree()
			return k.status()
		}
	}
}

// status returns the command's status once the tree is gone; there is
// none if the command itself could not be killed.
func (k *keeper) status() (syscall.WaitStatus, bool) {
	select {
	case ws := <-k.cmdDone:
		return ws, true
	default:
		return 0, false
	}
}

// killTree kills the keeper's descendants, pass after pass, until it has
// no child left. It gives up when all that is left refuses the signal
// (processes of another user), or after keeperKillWait, naming the
// survivors in the step's log.
func (k *keeper) killTree() {
	giveUp := time.NewTimer(keeperKillWait)
	defer giveUp.Stop()
	tick := time.NewTicker(keeperPassInterval)
	defer tick.Stop()
	for {
		select {
		case <-k.childless: // most commands leave nothing: no walk then
			return
		default:
		}
		signalled, refused := k.signalTree(syscall.SIGKILL)
		if signalled == 0 && len(refused) > 0 {
			for _, p := range refused {
				fmt.Fprintf(os.Stderr, "regent: process %d (%s) of the step cannot be "+
					"killed (not permitted); it is left running\n", p.pid, p.comm)
			}
			return
		}
		select {
		case <-k.childless:
			return
		case <-giveUp.C:
			for _, p := range descendants(k.self) {
				fmt.Fprintf(os.Stderr, "regent: process %d (%s) of the step survived "+
					"SIGKILL for %s; it is left behind\n", p.pid, p.comm, keeperKillWait)
			}
			return
		case <-tick.C:
		}
	}
}

// signalTree sends sig to every living descendant of the keeper, and
// returns how many it reached and those that refused it.
func (k *keeper) signalTree(sig syscall.Signal) (signalled int, refused []procStat) {
	for _, p := range descendants(k.self) {
		switch err := signalProcess(p, sig); err {
		case nil:
			signalled++
		case syscall.EPERM:
			refused = append(refused, p)
		}
	}
	return signalled, refused
}
