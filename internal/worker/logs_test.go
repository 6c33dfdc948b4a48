package worker

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/regent-ci/regent/internal/build"
)

// C17, C19: invalid UTF-8 and a long line without newline arrive exactly.
func TestLogBytesExact(t *testing.T) {
	t.Parallel()
	c, _, _ := newCluster(t)
	a := newBuild(shell(`printf '\377\376 caf\351\n'; head -c 1048576 /dev/zero | tr '\0' x`))
	c.assign(a)

	b := c.waitFinished(a.BuildID, 30*time.Second)
	checkResult(t, b, build.Success, "")
	want := append([]byte("\xff\xfe caf\xe9\n"), bytes.Repeat([]byte("x"), 1<<20)...)
	checkLog(t, b, 1, want)
}

// randomFile writes n random bytes to a file and returns its path and
// content.
func randomFile(t *testing.T, seed uint64, n int) (string, []byte) {
	data := make([]byte, n)
	rng := rand.New(rand.NewPCG(seed, 0))
	for i := range data {
		data[i] = byte(rng.UintN(256))
	}
	path := filepath.Join(t.TempDir(), "output")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path, data
}

// A master that drops connections, answers 500 and loses answers after
// acting on them still ends up with byte-identical logs.
func TestLogsSurviveAFlakyMaster(t *testing.T) {
	t.Parallel()
	for seed := range uint64(4) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			t.Parallel()
			c := newFakeCluster(t)
			c.setFault(randomFaults(seed, 3))
			m := c.addMaster("flaky")
			startWorker(t, testConfig(t, m.URL()))

			path, data := randomFile(t, seed, 1<<20+12345)
			// Output comes in bursts, so that chunks are cut at many
			// places and sends overlap with output.
			a := newBuild(
				shell(fmt.Sprintf(`for i in 1 2 3 4; do head -c 300000 %q | tail -c 100000; sleep 0.05; done; cat %q`, path, path)),
				shell("printf 'second step\\n'"),
			)
			c.assign(a)

			b := c.waitFinished(a.BuildID, 60*time.Second)
			checkResult(t, b, build.Success, "")
			var want []byte
			for range 4 {
				want = append(want, data[200000:300000]...)
			}
			checkLog(t, b, 1, append(want, data...))
			checkLog(t, b, 2, []byte("second step\n"))
		})
	}
}

// C09 and issue 5's "cut off": output produced while no master answers is
// spooled and delivered exactly once the master is back.
func TestOutputIsSpooledWhileNoMasterAnswers(t *testing.T) {
	t.Parallel()
	c := newFakeCluster(t)
	m := c.addMaster("m1")
	startWorker(t, testConfig(t, m.URL()))
	dir := t.TempDir()
	goFile, doneFile := filepath.Join(dir, "go"), filepath.Join(dir, "done")

	a := newBuild(
		shell(fmt.Sprintf(`echo before; while [ ! -e %q ]; do sleep 0.01; done; seq 1 30000; touch %q`,
			goFile, doneFile)),
		shell("echo next step"),
	)
	c.assign(a)
	c.waitFor(10*time.Second, "the first output", func() bool {
		s := c.builds[a.BuildID].steps[1]
		return s != nil && len(s.log) > 0
	})

	m.setDown(true)
	if err := os.WriteFile(goFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "the step to print while the master is down", func() bool {
		_, err := os.Stat(doneFile)
		return err == nil
	})
	hits := m.hits.Load()
	waitUntil(t, 10*time.Second, "the worker to retry", func() bool { return m.hits.Load() > hits+2 })
	m.setDown(false)

	b := c.waitFinished(a.BuildID, 30*time.Second)
	checkResult(t, b, build.Success, "")
	var want strings.Builder
	want.WriteString("before\n")
	for i := 1; i <= 30000; i++ {
		fmt.Fprintf(&want, "%d\n", i)
	}
	checkLog(t, b, 1, []byte(want.String()))
	checkLog(t, b, 2, []byte("next step\n"))
}

// A step printing past the spool limit keeps running; the log is cut with
// one marker line.
func TestSpoolLimitTruncatesWithAMarker(t *testing.T) {
	t.Parallel()
	c := newFakeCluster(t)
	m := c.addMaster("m1")
	cfg := testConfig(t, m.URL())
	cfg.SpoolLimit = 1000
	startWorker(t, cfg)
	ran := filepath.Join(t.TempDir(), "ran-on")

	a := newBuild(shell(fmt.Sprintf(`head -c 5000 /dev/zero | tr '\0' y; echo; echo more; touch %q`, ran)))
	c.assign(a)
	b := c.waitFinished(a.BuildID, 30*time.Second)
	checkResult(t, b, build.Success, "")
	if _, err := os.Stat(ran); err != nil {
		t.Errorf("the step did not run on past the limit: %v", err)
	}
	log := b.stepLog(1)
	head, marker, found := bytes.Cut(log, []byte("\n"))
	if !found || !bytes.Equal(head, bytes.Repeat([]byte("y"), 1000)) {
		t.Fatalf("the log does not start with the first 1000 bytes of output:\n%q", clip(log))
	}
	if !bytes.HasPrefix(marker, []byte("[regent: output truncated")) ||
		!bytes.HasSuffix(marker, []byte("]\n")) || bytes.Count(marker, []byte("\n")) != 1 {
		t.Fatalf("want one marker line after the kept output, got %q", marker)
	}
	checkLog(t, b, 1, log) // the finish reports what was stored
}

// A master that lost log bytes refuses the step finish with 409; the
// worker learns the stored size and sends the rest again.
func TestFinishRefusedForMissingLogResendsTheRest(t *testing.T) {
	t.Parallel()
	c := newFakeCluster(t)
	lost := false
	c.setFault(func(r *http.Request) fault {
		if lost || !strings.HasSuffix(r.URL.Path, "/steps/1/finish") {
			return faultNone
		}
		lost = true
		c.update(func() {
			for _, b := range c.builds {
				if s := b.steps[1]; s != nil {
					s.log = s.log[:len(s.log)/3]
				}
			}
		})
		return faultNone
	})
	m := c.addMaster("m1")
	startWorker(t, testConfig(t, m.URL()))

	path, data := randomFile(t, 99, 300000)
	a := newBuild(shell("cat " + path))
	c.assign(a)
	b := c.waitFinished(a.BuildID, 30*time.Second)
	checkResult(t, b, build.Success, "")
	if !lost {
		t.Fatal("the fault was never injected")
	}
	checkLog(t, b, 1, data)
}

// A 409 without a size on a log append means the attempt is stale: the
// worker abandons the build, kills its step and reports nothing more.
func TestStaleAttemptAbandonsTheBuild(t *testing.T) {
	t.Parallel()
	c, _, _ := newCluster(t)
	pidFile := filepath.Join(t.TempDir(), "pid")
	a := newBuild(shell(fmt.Sprintf(`echo $$ > %q; while :; do echo tick; sleep 0.05; done`, pidFile)),
		shell("echo never"))
	c.assign(a)
	pid := readPID(t, pidFile)
	c.waitFor(10*time.Second, "the first output", func() bool {
		s := c.builds[a.BuildID].steps[1]
		return s != nil && len(s.log) > 0
	})

	c.update(func() { c.builds[a.BuildID].a.AttemptToken = "a newer attempt" })
	waitUntil(t, 10*time.Second, "the step to be killed", func() bool { return processGone(pid) })
	c.waitFor(10*time.Second, "the worker to free its slot", func() bool {
		return len(c.lastPoll.Running) == 0 && c.lastPoll.Capacity == 1
	})
	if b := c.build(a.BuildID); b.finished || len(b.steps) != 1 {
		t.Fatalf("a stale build went on reporting: finished=%v, %d steps", b.finished, len(b.steps))
	}
}
