package worker

import "syscall"

// stepProcAttr puts a step's command in a process group of its own, and
// has the kernel kill it when the worker dies (even by SIGKILL), so that
// a killed worker does not leave its step running unseen.
//
// Pdeathsig reaches only the command itself, /bin/sh for a shell step,
// and fires when the thread that started it ends; Go ends a thread only
// under a goroutine that exits locked to it, which the worker never
// does, so in practice that is the end of the worker process. The command's own children are not
// signalled: those still in its group are orphans that run until they
// exit, and those that detached (setsid, a daemon) are out of the
// worker's reach in any case.
func stepProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
