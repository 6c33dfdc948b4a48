package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestTempDirIsOpenAndNamedForItsProcess(t *testing.T) {
	dir, err := TempDir("check")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	info, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o755 {
		t.Errorf("mode %v, want 0755", info.Mode().Perm())
	}
	if pid, ok := ownerPID(filepath.Base(dir)); !ok || pid != os.Getpid() {
		t.Errorf("%s names pid %d, want %d", dir, pid, os.Getpid())
	}
}

func TestSweepRemovesOnlyDirectoriesOfDeadProcesses(t *testing.T) {
	base := t.TempDir()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{ // name: should survive
		tempPrefix + strconv.Itoa(dead.Process.Pid) + "-pg-1": false,
		tempPrefix + strconv.Itoa(os.Getpid()) + "-pg-2":      true,
		tempPrefix + strconv.Itoa(os.Getppid()) + "-bin-3":    true,
		tempPrefix + "garbage":                                true,
		"other-dir":                                           true,
	}
	for name := range names {
		if err := os.Mkdir(filepath.Join(base, name), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sweepStale(base)
	for name, survive := range names {
		_, err := os.Stat(filepath.Join(base, name))
		if (err == nil) != survive {
			t.Errorf("%s: exists=%v, want %v", name, err == nil, survive)
		}
	}
}

func TestExitHooksRunMostRecentFirst(t *testing.T) {
	var order []string
	AtExit(func() { order = append(order, "first") })
	AtExit(func() { order = append(order, "second") })
	RunExitHooks()
	RunExitHooks() // hooks run once
	if strings.Join(order, ",") != "second,first" {
		t.Errorf("order = %v", order)
	}
}

func TestStartChildReportsExit(t *testing.T) {
	c, err := StartChild(exec.Command("sh", "-c", "exit 4"), syscall.SIGKILL)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("child did not exit")
	}
	if !c.Exited() || c.Err() == nil || !strings.Contains(c.Err().Error(), "exit status 4") {
		t.Errorf("exited=%v err=%v, want exit status 4", c.Exited(), c.Err())
	}
	if err := c.Signal(syscall.SIGTERM); err != os.ErrProcessDone {
		t.Errorf("Signal after exit = %v, want os.ErrProcessDone", err)
	}
}

func TestStartChildFailsForMissingProgram(t *testing.T) {
	if _, err := StartChild(exec.Command("/nonexistent/program"), 0); err == nil {
		t.Error("started a program that does not exist")
	}
}
