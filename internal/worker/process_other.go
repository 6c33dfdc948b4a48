//go:build !linux

package worker

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// keepersSupported: step keepers need Linux (child subreapers, pidfds,
// /proc); elsewhere commands run directly.
const keepersSupported = false

// stepProcAttr puts a step's command in a process group of its own.
// Outside Linux nothing kills the command when the worker dies.
func stepProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// startKept is never called where keepers are not supported.
func (p process) startKept(_, _ *os.File) (stepCommand, error) {
	return nil, errors.New("step keepers run only on Linux")
}

// runKeeper refuses: a keeper is never started where keepers are not
// supported.
func runKeeper([]string) int {
	fmt.Fprintln(os.Stderr, "regent: step keepers run only on Linux")
	return 2
}
