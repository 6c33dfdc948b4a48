package schedule

import (
	"slices"
	"testing"
	"time"

	"github.com/regent-ci/regent/internal/config"
)

// startState has a branch scheduler starting three builders, and an
// any-branch scheduler that stays in every generation.
func startState() *config.State {
	return &config.State{Schedulers: []config.Scheduler{
		{Name: "on-main", Kind: config.SchedulerBranch, Repo: "app", Branch: "main",
			Builders: []string{"unit", "lint", "deploy"}},
		{Name: "any", Kind: config.SchedulerAnyBranch, Repo: "app", Builders: []string{"unit"}},
	}}
}

// applyWithout applies e's state without the schedulers named.
func (e *env) applyWithout(names ...string) {
	e.t.Helper()
	st := *e.state
	st.Schedulers = slices.DeleteFunc(slices.Clone(st.Schedulers), func(sc config.Scheduler) bool {
		return slices.Contains(names, sc.Name)
	})
	if _, err := e.store.Apply(e.ctx, &st, "test", "tester"); err != nil {
		e.t.Fatal(err)
	}
}

// Changes recorded after a scheduler's generation was applied and before
// any master first ran it are built: the scheduler starts at the apply.
func TestChangesBeforeTheFirstRunAreBuilt(t *testing.T) {
	t.Parallel()
	e := newEnv(t, startState())
	e.record("main", nil, nil)
	e.runOnce(e.service(false))
	if n := len(e.buildsets("on-main")); n != 2 {
		t.Fatalf("on-main made %d buildsets for the 2 changes recorded before its first run, want 2", n)
	}
}

// The same for a tree-stable timer: a change recorded before the first
// run of its owner gets its timer.
func TestTreeStableTimerForAChangeBeforeTheFirstRun(t *testing.T) {
	t.Parallel()
	e := newEnv(t, stableState())
	t0 := time.Now().Truncate(time.Second)
	ch := e.record("main", nil)[0]
	e.setRecordedAt(ch.ID, t0)
	c := newClock(t0.Add(10 * time.Second))
	if _, err := e.timed("stable", e.fence("stable", 1), c).RunOnce(e.ctx); err != nil {
		t.Fatal(err)
	}
	if sets := e.buildsets("stable"); len(sets) != 1 || *sets[0].ChangeID != ch.ID {
		t.Fatalf("buildsets = %+v, want one for the change recorded before the first run", sets)
	}
}

// A scheduler removed and added back builds nothing of what was recorded
// while it was absent, and builds what comes after; a scheduler kept all
// along builds everything.
func TestReaddedSchedulerDoesNotBuildWhatItMissed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, startState())
	s := e.service(false)
	e.runOnce(s)
	e.applyWithout("on-main")
	e.record("main", nil, nil, nil)
	e.runOnce(s)
	if _, err := e.store.Apply(e.ctx, e.state, "test", "tester"); err != nil {
		t.Fatal(err)
	}
	e.runOnce(s)
	if sets := e.buildsets("on-main"); len(sets) != 0 {
		t.Fatalf("the re-added scheduler made %d buildsets for changes recorded while it was absent", len(sets))
	}
	next := e.record("main", nil)[0]
	e.runOnce(s)
	sets := e.buildsets("on-main")
	if len(sets) != 1 || *sets[0].ChangeID != next.ID || len(sets[0].Requests) != 3 {
		t.Fatalf("buildsets = %+v, want one for the change after it came back", sets)
	}
	if n := len(e.buildsets("any")); n != 4 {
		t.Fatalf("the scheduler kept all along made %d buildsets, want 4", n)
	}
}

// A periodic scheduler counts its first run from the apply: a first run
// made late still builds the first due time, and one removed and added
// back does not make up the runs it missed while absent.
func TestPeriodicCountsFromTheApply(t *testing.T) {
	t.Parallel()
	e := newEnv(t, periodicState())
	late := newClock(time.Now().Add(6 * time.Second))
	if _, err := e.timed("every5s", e.fence("every5s", 1), late).RunOnce(e.ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(e.buildsets("every5s")); n != 1 {
		t.Fatalf("a first run 6s after the apply made %d buildsets, want the one due 5s after it", n)
	}

	e.setLastRun("every5s", time.Now().Add(-time.Hour))
	e.applyWithout("every5s")
	if _, err := e.store.Apply(e.ctx, e.state, "test", "tester"); err != nil {
		t.Fatal(err)
	}
	now := newClock(time.Now().Add(time.Second))
	if _, err := e.timed("every5s", e.fence("every5s", 2), now).RunOnce(e.ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(e.buildsets("every5s")); n != 1 {
		t.Fatalf("the re-added scheduler made %d more buildsets at once, want none before its first due time", n-1)
	}
}
