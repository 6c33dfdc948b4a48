package worker

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/regent-ci/regent/internal/build"
)

// A command run under a keeper ends, prints and is reported exactly as
// one started directly: exit codes, deaths by signal, failures to start;
// and it sees neither the keeper's marker variable nor its status pipe.
func TestKeeperReportsAsADirectStart(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		args    []string
		want    outcome
		wantLog string
	}{
		{"success", sh("echo out; echo err >&2"), outcome{result: build.Success}, "out\nerr\n"},
		{"exit code", sh("echo out; exit 3"), outcome{build.Failure, "exit status 3"}, "out\n"},
		{"SIGKILL", sh("kill -KILL $$"), outcome{build.Failure, "killed by signal killed"}, ""},
		{"SIGTERM", sh("kill -TERM $$"), outcome{build.Failure, "killed by signal terminated"}, ""},
		{"no trace of the keeper",
			sh(`echo "${` + keeperEnv + `-unset}"; [ -e /proc/$$/fd/3 ] && echo fd3 || echo no fd3`),
			outcome{result: build.Success}, "unset\nno fd3\n"},
		{"missing program", []string{"/nonexistent/program"}, outcome{build.Exception,
			"start /nonexistent/program: fork/exec /nonexistent/program: no such file or directory"}, ""},
		{"program not in PATH", []string{"regent-no-such-program"}, outcome{build.Exception,
			`start regent-no-such-program: exec: "regent-no-such-program": executable file not ` +
				`found in $PATH`}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for _, mode := range []string{"kept", "direct"} {
				sp, err := newSpool(filepath.Join(t.TempDir(), "log"), 1<<20, slog.Default())
				if err != nil {
					t.Fatal(err)
				}
				p := process{args: tc.args, dir: t.TempDir(), env: os.Environ(), out: sp, grace: 1e9}
				start := p.startKept
				if mode == "direct" {
					start = p.startDirect
				}
				got := p.runWith(context.Background(), start)
				sp.close()
				log, err := os.ReadFile(sp.path)
				if err != nil {
					t.Fatal(err)
				}
				if got != tc.want || string(log) != tc.wantLog {
					t.Errorf("%s: got %+v with log %q, want %+v with log %q",
						mode, got, log, tc.want, tc.wantLog)
				}
			}
		})
	}
}

func sh(command string) []string { return []string{"/bin/sh", "-c", command} }

func TestParseStat(t *testing.T) {
	t.Parallel()
	tail := " 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 987654 0 0\n" // fields 5 to 21, start time, more
	for _, tc := range []struct {
		line string
		want procStat
	}{
		{"42 (sleep) S 7" + tail, procStat{pid: 42, ppid: 7, comm: "sleep", state: 'S', start: 987654}},
		{"42 (a) b (c) Z 1" + tail, procStat{pid: 42, ppid: 1, comm: "a) b (c", state: 'Z', start: 987654}},
	} {
		got, err := parseStat([]byte(tc.line))
		if err != nil || got != tc.want {
			t.Errorf("parseStat(%q) = %+v, %v; want %+v", tc.line, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "42 sleep S 7" + tail, "42 (sleep) S 7 0 0\n", "x (sleep) S 7" + tail} {
		if got, err := parseStat([]byte(bad)); err == nil {
			t.Errorf("parseStat(%q) = %+v, want an error", bad, got)
		}
	}
}

// The walk of /proc finds this very process among its parent's
// descendants, with the start time the kernel shows.
func TestDescendantsFindsAChild(t *testing.T) {
	t.Parallel()
	self, err := readStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range descendants(os.Getppid()) {
		// The same process: pid and start time. Its state (running,
		// sleeping) may differ between the two reads.
		if p.pid == self.pid && p.start == self.start {
			return
		}
	}
	t.Fatalf("process %d not found among the descendants of %d", os.Getpid(), os.Getppid())
}
