package worker

import (
	"os"
	"sync/atomic"
	"syscall"
)

// A step keeper is a small process that stands between the worker and a
// step's command, so that nothing a step starts outlives the step: not
// when the command exits, not when it is cancelled or times out, and not
// when the worker itself dies, even by SIGKILL.
//
// A process group alone cannot promise that. A command's children may
// leave its group (setsid, a daemon's double fork), and a dead worker
// cannot signal anything: the kernel's parent-death signal reaches only
// the worker's direct child, and orphans are adopted by init, out of
// anyone's sight. So on Linux every command runs under a keeper, which is
// this very binary started again (/proc/self/exe, with keeperEnv set) and
// turned aside at the top of main by [RunKeeperIfRequested]. The keeper:
//
//   - makes itself a child subreaper, so that every orphan of the
//     command's tree, double-forked daemons included, is adopted by the
//     keeper instead of init: the tree cannot lose track of itself;
//   - starts the command with the keeper's own standard input, output
//     and error, so the worker's output plumbing sees the same bytes;
//   - reaps every process the tree leaves to it, and ends when it has no
//     child left, which on a subreaper means no descendant is left;
//   - when the command exits, kills whatever it left running; on SIGTERM
//     from the worker (a cancellation, a timeout, a stop), sends SIGTERM
//     to the whole tree, then SIGKILL to what is left once the command
//     has exited or the grace period has passed;
//   - gets SIGTERM from the kernel when the worker dies (Pdeathsig); it
//     tells that from an order by its parent having changed, and kills
//     the tree at once, as nobody waits for a graceful end;
//   - reports the command's wait status on a pipe of its own (file
//     descriptor 3), not as its exit status, so that an exit code and a
//     death by signal reach the worker unchanged.
//
// The tree is found by walking /proc for the processes whose chain of
// parents leads to the keeper, and each pass signals what it finds; the
// passes repeat until the keeper has no child left, so a process that
// forked while a pass ran is caught by the next. A process is signalled
// through a pidfd opened after the walk and checked against the start
// time the walk saw, so a process id reused in between is never hit.
// Two kinds of survivors end the keeper without that: processes it is
// not permitted to signal (a setuid program's, say), and processes that
// outlive SIGKILL for keeperKillWait (stuck in the kernel); both are
// named in the step's log and left behind.
//
// Elsewhere than Linux, and in programs that do not call
// RunKeeperIfRequested, a command runs directly in a process group of its
// own, as described in process.go.

// keeperEnv is set in a keeper's environment, and only there: the keeper
// removes it before starting the command.
const keeperEnv = "REGENT_STEP_KEEPER"

// keepersEnabled is set once the program has shown, by calling
// RunKeeperIfRequested, that it turns a keeper aside at its start; only
// then may the worker start keepers by running the program again.
var keepersEnabled atomic.Bool

// RunKeeperIfRequested runs this process as a step keeper when the
// worker started it as one, and then exits; otherwise it returns at once.
// A program that runs a [Worker] calls it first thing in main (and in
// TestMain), before flags are parsed or anything else starts: the worker
// starts keepers by running its own executable again. In a program that
// never calls it, steps run without a keeper, and what they leave behind
// can outlive the worker.
func RunKeeperIfRequested() {
	if os.Getenv(keeperEnv) == "" {
		// Without /proc a keeper could neither be started nor find its
		// tree.
		_, err := os.Stat("/proc/self/exe")
		keepersEnabled.Store(keepersSupported && err == nil)
		return
	}
	// syscall.Exit, not os.Exit: a keeper has nothing to flush at exit,
	// and a build with the race detector would sleep there for a second
	// (GORACE atexit_sleep_ms), which every step would wait for.
	syscall.Exit(runKeeper(os.Args[1:]))
}
