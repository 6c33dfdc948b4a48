package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// childBuild waits for the build that builder runs for a trigger of build
// parent and returns it.
func childBuild(f *farm, builder string, parent int64) apiBuild {
	f.t.Helper()
	var child apiBuild
	eventually(f.t, 30*time.Second, func() error {
		for _, b := range builds(f.t, f.url(0)) {
			if b.Builder == builder && b.Properties["parent_build"] == fmt.Sprint(parent) {
				child = b
				return nil
			}
		}
		return fmt.Errorf("no %s build triggered by build %d yet", builder, parent)
	})
	return child
}

// A trigger step that waits takes the result of the build it triggered: a
// failing child fails the parent; cancelling the parent cancels the child.
func TestTriggerStepWaitsForItsChildren(t *testing.T) {
	t.Parallel()
	hold := filepath.Join(t.TempDir(), "hold")
	writeFile(t, hold, "")
	star := fmt.Sprintf(`worker(name = "w1", password = secret("w1"), max_builds = 3)
builder(name = "parent", workers = ["w1"], steps = [
    step.trigger(schedulers = ["fails"], wait = True),
    step.shell(name = "after", command = "echo must not run"),
])
builder(name = "nowait", workers = ["w1"], steps = [
    step.trigger(schedulers = ["fails"]),
])
builder(name = "holder", workers = ["w1"], steps = [step.trigger(schedulers = ["holds"], wait = True)])
builder(name = "child", workers = ["w1"], steps = [step.shell(name = "fail", command = "echo child; exit 3")])
builder(name = "slow", workers = ["w1"], steps = [
    step.shell(name = "hold", command = "echo holding; while [ -e %s ]; do sleep 0.1; done"),
])
scheduler.force(name = "force", builders = ["parent", "nowait", "holder"])
scheduler.triggerable(name = "fails", builders = ["child"])
scheduler.triggerable(name = "holds", builders = ["slow"])
`, hold)
	f := newFarm(t, star, farmOptions{workers: []string{"w1"}})
	f.worker("w1", t.TempDir())

	parent := runBuild(f, "parent")
	if result(parent) != "failure" {
		t.Errorf("parent ended %s (%q), want failure", result(parent), parent.Reason)
	}
	child := f.waitFinished(childBuild(f, "child", parent.ID).ID, 30*time.Second)
	if result(child) != "failure" {
		t.Errorf("child %d ended %s, want failure", child.ID, result(child))
	}
	if log := f.stepLog(parent.ID, 1); !strings.Contains(log, "triggered child through fails") ||
		!strings.Contains(log, "ended: failure") {
		t.Errorf("trigger step's log: %q", log)
	}

	if b := runBuild(f, "nowait"); result(b) != "success" {
		t.Errorf("a trigger step that does not wait ended %s (%q), want success", result(b), b.Reason)
	}

	holder := f.buildOf(f.forceOn(0, "holder"), 30*time.Second)
	slow := childBuild(f, "slow", holder)
	f.waitLog(slow.ID, 1, "holding", 30*time.Second)
	code := postJSON(t, fmt.Sprintf("%s/api/v1/builds/%d/cancel", f.url(0), holder),
		`{"reason": "stop the family"}`, nil)
	if code != http.StatusOK && code != http.StatusAccepted {
		t.Fatalf("cancel: status %d", code)
	}
	if b := f.waitFinished(holder, 30*time.Second); result(b) != "cancelled" {
		t.Errorf("cancelled parent ended %s (%q)", result(b), b.Reason)
	}
	if b := f.waitFinished(slow.ID, 30*time.Second); result(b) != "cancelled" {
		t.Errorf("child of a cancelled parent ended %s (%q), want cancelled", result(b), b.Reason)
	}
	os.Remove(hold)
}
