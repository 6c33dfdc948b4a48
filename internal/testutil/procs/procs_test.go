package procs

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// helperEnv makes the test binary act as a helper program instead of
// running tests; its value names the behaviour.
const helperEnv = "PROCS_TEST_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(helper(mode))
	}
	os.Exit(Main(m))
}

// helper is the program the tests start: this test binary, re-executed.
// Every mode ends by itself within a minute.
func helper(mode string) int {
	switch mode {
	case "echo":
		fmt.Println("out:", strings.Join(os.Args[1:], " "))
		fmt.Fprintln(os.Stderr, "err:", os.Getenv("HELPER_VALUE"))
		code, _ := strconv.Atoi(os.Getenv("HELPER_EXIT"))
		return code
	case "serve":
		terminate := make(chan os.Signal, 1)
		signal.Notify(terminate, syscall.SIGTERM)
		fmt.Println("listening on 127.0.0.1:4242")
		tick := time.NewTicker(10 * time.Millisecond)
		for i := 0; i < 6000; i++ {
			select {
			case <-terminate:
				fmt.Fprintln(os.Stderr, "terminating")
				return 3
			case <-tick.C:
				fmt.Println("tick", i)
			}
		}
		return 0
	case "spawn":
		grandchild := exec.Command("sleep", "60")
		if err := grandchild.Start(); err != nil {
			fmt.Println("spawn failed:", err)
			return 1
		}
		fmt.Println("grandchild", grandchild.Process.Pid)
		_ = grandchild.Wait()
		return 0
	case "partial":
		fmt.Print("no newline yet")
		return 0
	}
	fmt.Fprintln(os.Stderr, "unknown helper mode", mode)
	return 2
}

func startHelper(t *testing.T, mode string, args ...string) *Proc {
	t.Helper()
	return Start(t, Spec{
		Name: mode,
		Path: os.Args[0],
		Args: args,
		Env:  []string{helperEnv + "=" + mode},
	})
}

// state returns the process state letter from /proc, "" if it is gone.
func state(pid int) string {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	i := strings.LastIndexByte(string(stat), ')')
	if i < 0 || i+2 >= len(stat) {
		return ""
	}
	return string(stat[i+2])
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestOutputArgsEnvAndExitCode(t *testing.T) {
	p := Start(t, Spec{
		Name: "echo",
		Path: os.Args[0],
		Args: []string{"a", "b c"},
		Env:  []string{helperEnv + "=echo", "HELPER_VALUE=from env", "HELPER_EXIT=7"},
	})
	err := p.Wait(10 * time.Second)
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != 7 {
		t.Fatalf("Wait = %v, want exit status 7", err)
	}
	if p.ExitCode() != 7 {
		t.Errorf("ExitCode = %d, want 7", p.ExitCode())
	}
	if got := p.Stdout(); got != "out: a b c\n" {
		t.Errorf("stdout = %q", got)
	}
	if got := p.Stderr(); got != "err: from env\n" {
		t.Errorf("stderr = %q", got)
	}
	if filepath.Dir(p.StdoutPath()) != filepath.Dir(p.StderrPath()) || p.StdoutPath() == p.StderrPath() {
		t.Errorf("output files %s and %s", p.StdoutPath(), p.StderrPath())
	}
}

func TestWaitForMatchThenTerminate(t *testing.T) {
	p := startHelper(t, "serve")
	m, err := p.WaitForMatch(regexp.MustCompile(`listening on (\S+)`), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if m[1] != "127.0.0.1:4242" {
		t.Errorf("submatch = %q", m[1])
	}
	if p.ExitCode() != -1 {
		t.Errorf("ExitCode of a running process = %d, want -1", p.ExitCode())
	}

	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if _, err := p.WaitForLine("terminating", 10*time.Second); err != nil {
		t.Error(err)
	}
	if err := p.Wait(10 * time.Second); p.ExitCode() != 3 {
		t.Errorf("Wait = %v, ExitCode = %d, want 3", err, p.ExitCode())
	}
}

func TestWaitForLineFailures(t *testing.T) {
	p := startHelper(t, "serve")
	if _, err := p.WaitForLine("never printed", 100*time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Errorf("WaitForLine on a running process = %v, want ErrTimeout", err)
	}
	if err := p.Wait(50 * time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Errorf("Wait on a running process = %v, want ErrTimeout", err)
	}

	done := startHelper(t, "echo")
	if _, err := done.WaitForLine("never printed", 10*time.Second); !errors.Is(err, ErrExited) {
		t.Errorf("WaitForLine on an exiting process = %v, want ErrExited", err)
	}
}

func TestUnfinishedLastLineCountsOnceExited(t *testing.T) {
	p := startHelper(t, "partial")
	line, err := p.WaitForLine("no newline", 10*time.Second)
	if err != nil || line != "no newline yet" {
		t.Errorf("WaitForLine = %q, %v", line, err)
	}
}

func TestStopAndCont(t *testing.T) {
	p := startHelper(t, "serve")
	if _, err := p.WaitForLine("tick 1", 10*time.Second); err != nil {
		t.Fatal(err)
	}

	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the process to be stopped", func() bool { return state(p.PID()) == "T" })
	before := p.Stdout()
	time.Sleep(100 * time.Millisecond) // a stopped process prints nothing, however long
	if after := p.Stdout(); after != before {
		t.Errorf("a stopped process printed %q", after[len(before):])
	}

	if err := p.Cont(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the process to print again", func() bool { return len(p.Stdout()) > len(before) })
}

func TestKill(t *testing.T) {
	p := startHelper(t, "serve")
	if err := p.Stop(); err != nil { // a paused process dies too
		t.Fatal(err)
	}
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	if !p.Exited() || p.ExitCode() != -1 {
		t.Errorf("after Kill: exited=%v code=%d", p.Exited(), p.ExitCode())
	}
	if err := p.Signal(syscall.SIGTERM); !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("Signal after exit = %v, want os.ErrProcessDone", err)
	}
	if err := p.Kill(); err != nil {
		t.Errorf("second Kill = %v", err)
	}
}

func TestTestEndKillsProcessGroup(t *testing.T) {
	var parent, grandchild int
	t.Run("user", func(t *testing.T) {
		p := startHelper(t, "spawn")
		m, err := p.WaitForMatch(regexp.MustCompile(`grandchild (\d+)`), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		parent = p.PID()
		grandchild, _ = strconv.Atoi(m[1])
	})
	if grandchild == 0 {
		t.Fatal("no grandchild")
	}
	// The grandchild is reaped by whoever adopted it: a zombie counts as
	// gone.
	for _, pid := range []int{parent, grandchild} {
		waitFor(t, fmt.Sprintf("pid %d to end", pid), func() bool { s := state(pid); return s == "" || s == "Z" })
	}
}

func TestFailedTestShowsOutput(t *testing.T) {
	p := startHelper(t, "echo", "visible")
	if err := p.Wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	rec := &recordingTB{TB: t}
	p.cleanup(rec)
	if !strings.Contains(rec.logs, "out: visible") || !strings.Contains(rec.logs, "exited 0") {
		t.Errorf("log of a failed test:\n%s", rec.logs)
	}
}

// recordingTB is a failed test that records what is logged to it.
type recordingTB struct {
	testing.TB
	logs string
}

func (r *recordingTB) Failed() bool { return true }
func (r *recordingTB) Logf(format string, args ...any) {
	r.logs += fmt.Sprintf(format, args...) + "\n"
}

func TestBuildOncePerProcess(t *testing.T) {
	path := Build(t, "./internal/testutil/procs/testdata/hello")
	if filepath.Base(path) != "hello" {
		t.Errorf("binary %s is not named after its package", path)
	}
	if again := Build(t, "./internal/testutil/procs/testdata/hello"); again != path {
		t.Errorf("second Build gave %s, first %s", again, path)
	}
	p := Start(t, Spec{Path: path, Args: []string{"x"}})
	if line, err := p.WaitForLine("hello from testdata: x", 10*time.Second); err != nil {
		t.Errorf("WaitForLine = %q, %v", line, err)
	}
	if p.Name() != "hello" {
		t.Errorf("Name = %q, want the program's base name", p.Name())
	}
}

func TestBuildFailureIsReported(t *testing.T) {
	b := &build{}
	b.path, b.err = buildPackage("./internal/testutil/procs/testdata/missing")
	if b.err == nil || !strings.Contains(b.err.Error(), "testdata/missing") {
		t.Errorf("building a missing package: %v", b.err)
	}
}

func TestRegentBinaryFromEnvironment(t *testing.T) {
	t.Setenv(envBinary, "/opt/regent/bin/regent")
	if got := Regent(t); got != "/opt/regent/bin/regent" {
		t.Errorf("Regent = %q", got)
	}
}

func TestModuleRoot(t *testing.T) {
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Errorf("no go.mod in %s: %v", root, err)
	}
}
