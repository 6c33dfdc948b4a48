package schedule

import (
	"errors"
	"testing"

	"github.com/regent-ci/regent/internal/build"
	"github.com/regent-ci/regent/internal/config"
	"github.com/regent-ci/regent/internal/store"
)

// triggerState has deploy and unit on worker w1, lint on worker w2, a
// force scheduler for deploy and a triggerable one for unit and lint.
func triggerState() *config.State {
	step := []config.Step{{Kind: config.StepShell, Name: "run", Command: "true"}}
	return &config.State{Workers: []config.Worker{
		{Name: "w1", Password: "pw", MaxBuilds: 50}, {Name: "w2", Password: "pw", MaxBuilds: 50},
	}, Builders: []config.Builder{
		{Name: "deploy", Workers: []string{"w1"}, Steps: step},
		{Name: "lint", Workers: []string{"w2"}, Steps: step},
		{Name: "unit", Workers: []string{"w1"}, Steps: step},
	}, Schedulers: []config.Scheduler{
		{Name: "force", Kind: config.SchedulerForce, Builders: []string{"deploy"}},
		{Name: "checks", Kind: config.SchedulerTriggerable, Builders: []string{"unit", "lint"},
			Properties: map[string]string{"suite": "full"}},
	}}
}

// startParent forces a build of deploy and claims it.
func (e *env) startParent(sess store.Session, revision string) store.Claimed {
	e.t.Helper()
	if _, err := Force(e.ctx, e.store, "deploy", "test", map[string]string{"revision": revision}); err != nil {
		e.t.Fatal(err)
	}
	return e.claimAll(sess)["deploy"]
}

// Must-show 6 at the store and scheduler level: a parent build whose
// triggered child fails takes the failure, and cancelling the parent
// cancels its children, pending or running.
func TestTriggerWaitTakesTheChildsFailure(t *testing.T) {
	t.Parallel()
	e := newEnv(t, triggerState())
	sess := e.session()
	parent := e.startParent(sess, "r1")

	sets, err := Trigger(e.ctx, e.store, parent.Build, 2, []string{"checks"}, map[string]string{"extra": "x"})
	if err != nil || len(sets) != 1 || len(sets[0].Requests) != 2 {
		t.Fatalf("Trigger = %+v, %v", sets, err)
	}
	p := sets[0].Properties
	if p["revision"] != "r1" || p["suite"] != "full" || p["extra"] != "x" || p["parent_builder"] != "deploy" {
		t.Fatalf("child properties = %v", p)
	}
	// A retried trigger starts nothing twice.
	again, err := Trigger(e.ctx, e.store, parent.Build, 2, []string{"checks"}, nil)
	if err != nil || again[0].ID != sets[0].ID {
		t.Fatalf("retried Trigger = %+v, %v", again, err)
	}
	if done, _, _, err := TriggerOutcome(e.ctx, e.store, parent.Build.ID, 2); err != nil || done {
		t.Fatalf("outcome before the children ran: done %v, %v", done, err)
	}

	children := e.claimAll(sess)
	children["lint"] = e.claimAll(e.sessionOf("w2"))["lint"]
	e.finish(children["unit"], build.Success)
	if done, _, _, _ := TriggerOutcome(e.ctx, e.store, parent.Build.ID, 2); done {
		t.Fatal("done with one child still running")
	}
	e.finish(children["lint"], build.Failure)
	done, result, kids, err := TriggerOutcome(e.ctx, e.store, parent.Build.ID, 2)
	if err != nil || !done || result != build.Failure || len(kids) != 2 {
		t.Fatalf("outcome = %v %q %+v %v, want done with failure", done, result, kids, err)
	}

	// The step takes the result, and the build the step's.
	if err := e.store.StartStep(e.ctx, parent.Build.ID, parent.AttemptToken, 2, "trigger"); err != nil {
		t.Fatal(err)
	}
	if err := e.store.FinishStep(e.ctx, parent.Build.ID, parent.AttemptToken, 2, result, "a triggered build failed", nil, 0); err != nil {
		t.Fatal(err)
	}
	e.finish(parent, result)
	b, err := e.store.BuildByID(e.ctx, parent.Build.ID)
	if err != nil || b.Result == nil || *b.Result != build.Failure {
		t.Fatalf("parent = %+v, %v", b, err)
	}

	if _, err := Trigger(e.ctx, e.store, parent.Build, 3, []string{"force"}, nil); !errors.Is(err, ErrNotTriggerable) {
		t.Fatalf("triggering a force scheduler: %v", err)
	}
}

func TestCancellingTheParentCancelsItsChildren(t *testing.T) {
	t.Parallel()
	e := newEnv(t, triggerState())
	sess := e.session()
	parent := e.startParent(sess, "r1")
	if _, err := Trigger(e.ctx, e.store, parent.Build, 2, []string{"checks"}, nil); err != nil {
		t.Fatal(err)
	}
	// unit runs; lint, whose worker is away, is still pending.
	running := e.claimAll(sess)["unit"]
	s := e.service(false)
	e.runOnce(s)
	if n := len(cancelOrders(e, sess)); n != 0 {
		t.Fatalf("children cancelled before the parent was: %d", n)
	}

	if err := e.store.CancelBuild(e.ctx, parent.Build.ID, "not needed"); err != nil {
		t.Fatal(err)
	}
	e.runOnce(s)
	kids, err := e.store.TriggeredRequests(e.ctx, parent.Build.ID, 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range kids {
		switch k.Builder {
		case "lint":
			if k.State != store.RequestCancelled || k.Reason == "" {
				t.Fatalf("pending child = %+v, want cancelled with a reason", k)
			}
		case "unit":
			if orders := cancelOrders(e, sess); len(orders) != 2 || !contains(orders, running.Build.ID) {
				t.Fatalf("cancel orders = %v, want the parent and the running child", orders)
			}
		}
	}
	// The running child ends cancelled when its worker stops it, and the
	// outcome a waiting step sees is cancelled.
	e.finish(running, build.Failure)
	done, result, _, err := TriggerOutcome(e.ctx, e.store, parent.Build.ID, 2)
	if err != nil || !done || result != build.Cancelled {
		t.Fatalf("outcome = %v %q %v, want done with cancelled", done, result, err)
	}
}

func cancelOrders(e *env, sess store.Session) []int64 {
	e.t.Helper()
	ids, err := e.store.CancelOrders(e.ctx, sess.ID)
	if err != nil {
		e.t.Fatal(err)
	}
	return ids
}

func contains(ids []int64, id int64) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}
