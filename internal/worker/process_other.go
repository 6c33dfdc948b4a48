//go:build !linux

package worker

import "syscall"

// stepProcAttr puts a step's command in a process group of its own.
// Outside Linux nothing kills the command when the worker dies.
func stepProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
