package e2e

import (
	"testing"
	"time"
)

// A master and its worker on one machine are stopped together for longer
// than the worker time-to-live, as when a laptop sleeps or a virtual
// machine is frozen, and resume. The running build goes on and succeeds:
// the master was not running either, so the worker's silence is not
// counted against it. The master resumes a moment before the worker, so
// a master that counted the pause would declare the worker lost at once.
func TestBuildSurvivesAPauseOfTheWholeMachine(t *testing.T) {
	t.Parallel()
	f := newFarm(t, oneBuilder("echo running; sleep 6; echo done"),
		farmOptions{workers: []string{"w1"}, args: []string{"--worker-ttl", workerTTL.String()}})
	w := f.worker("w1", t.TempDir())
	id := f.buildOf(f.forceOn(0, "b"), 30*time.Second)
	f.waitLog(id, 1, "running", 30*time.Second)

	m := f.masters[0].proc
	for _, p := range []interface{ Stop() error }{w, m} {
		if err := p.Stop(); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(4*workerTTL + 2*time.Second)
	if err := m.Cont(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if err := w.Cont(); err != nil {
		t.Fatal(err)
	}

	b := f.waitFinished(id, livenessBound)
	if result(b) != "success" {
		t.Fatalf("build %d ended %s (%q) after the machine's pause; want success", id, result(b), b.Reason)
	}
	if w.Exited() {
		t.Fatalf("the worker stopped after the machine's pause:\n%s", w.Stderr())
	}
}
