package store_test

import (
	"context"
	"testing"

	"github.com/regent-ci/regent/internal/build"
	"github.com/regent-ci/regent/internal/config"
	"github.com/regent-ci/regent/internal/store"
)

// lockOrderState declares exclusive locks x, y and w and one worker per
// builder, with the builders' locks as given: builder name -> builder
// locks, and the locks of its one step.
func lockOrderState(builders map[string][2][]string) *config.State {
	st := &config.State{Locks: []config.Lock{{Name: "w", MaxHolders: 1}, {Name: "x", MaxHolders: 1},
		{Name: "y", MaxHolders: 1}}}
	for _, name := range []string{"a", "b", "c", "d"} {
		locks, ok := builders[name]
		if !ok {
			continue
		}
		st.Workers = append(st.Workers, config.Worker{Name: "w" + name, Password: "pw", MaxBuilds: 1})
		st.Builders = append(st.Builders, config.Builder{Name: name, Workers: []string{"w" + name},
			Locks: locks[0], Steps: []config.Step{{Kind: config.StepShell, Name: "run", Command: "true",
				Locks: locks[1]}}})
	}
	return st
}

// A running build holding lock x must get lock y for its step even when an
// earlier request, waiting to start, wants both x and y: that request
// cannot start before the build ends, so making the step wait behind it
// would wait forever.
func TestStepIsNotHeldBackByARequestWaitingToStart(t *testing.T) {
	eachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		apply(t, s, lockOrderState(map[string][2][]string{
			"b": {{"x"}, {"y"}},
			"c": {{"x", "y"}, nil},
		}))
		wb, wc := login(t, s, "wb", "pw"), login(t, s, "wc", "pw")
		force(t, s, "c") // the earlier request
		force(t, s, "b")
		cb := claimOne(t, s, wb)
		if cb.Build.ID == 0 {
			t.Fatal("b was not claimed while x was free")
		}
		if cc := claimOne(t, s, wc); cc.Build.ID != 0 {
			t.Fatalf("c claimed build %d while b holds x", cc.Build.ID)
		}
		got, err := s.AcquireStepLocks(ctx, cb.Build.ID, cb.AttemptToken, 1)
		if err != nil || !got.Acquired {
			t.Fatalf("b's step behind c's waiting request: %+v, %v; want y acquired", got, err)
		}
		if err := s.ReleaseStepLocks(ctx, cb.Build.ID, cb.AttemptToken, 1); err != nil {
			t.Fatal(err)
		}
		finish(t, s, cb, build.Success)
		if cc := claimOne(t, s, wc); cc.Build.ID == 0 {
			t.Fatal("c was not claimed once b ended")
		}
	})
}

// A step waiting for x, held by another build, waits for x only: lock w,
// which it also names and which is free, goes to a later build's step
// meanwhile. Holding w back for a step that can take none of its locks
// would make every build holding x that waits for w wait forever.
func TestWaitingStepHoldsBackOnlyTheLockWithoutRoom(t *testing.T) {
	eachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		apply(t, s, lockOrderState(map[string][2][]string{
			"a": {{"x"}, {"w"}}, // holds x, its step wants w
			"b": {nil, {"x", "w"}},
		}))
		wa, wb := login(t, s, "wa", "pw"), login(t, s, "wb", "pw")
		force(t, s, "b") // the earlier request
		force(t, s, "a")
		cb := claimOne(t, s, wb)
		ca := claimOne(t, s, wa)
		if cb.Build.ID == 0 || ca.Build.ID == 0 {
			t.Fatalf("claims: b %d, a %d; want both", cb.Build.ID, ca.Build.ID)
		}
		got, err := s.AcquireStepLocks(ctx, cb.Build.ID, cb.AttemptToken, 1)
		if err != nil || got.Acquired || got.Waiting != "x" {
			t.Fatalf("b's step while a holds x: %+v, %v; want waiting for x", got, err)
		}
		got, err = s.AcquireStepLocks(ctx, ca.Build.ID, ca.AttemptToken, 1)
		if err != nil || !got.Acquired {
			t.Fatalf("a's step for the free lock w: %+v, %v; want acquired", got, err)
		}
		if err := s.ReleaseStepLocks(ctx, ca.Build.ID, ca.AttemptToken, 1); err != nil {
			t.Fatal(err)
		}
		finish(t, s, ca, build.Success)
		got, err = s.AcquireStepLocks(ctx, cb.Build.ID, cb.AttemptToken, 1)
		if err != nil || !got.Acquired {
			t.Fatalf("b's step once a ended: %+v, %v; want acquired", got, err)
		}
	})
}

// A build holding lock a waits for the build it triggered, which needs lock
// b. An earlier request, not yet started, wants a and b: it must not hold
// b back from the triggered build, which would wait for it for ever while
// it waits for a.
func TestTriggeredRequestIsNotHeldBackByARequestWaitingToStart(t *testing.T) {
	eachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		apply(t, s, lockOrderState(map[string][2][]string{
			"a": {{"x"}, nil},      // the parent, holding x
			"b": {{"y"}, nil},      // the triggered child, needing y
			"c": {{"x", "y"}, nil}, // the earlier request wanting both
		}))
		wa, wb, wc := login(t, s, "wa", "pw"), login(t, s, "wb", "pw"), login(t, s, "wc", "pw")
		force(t, s, "a")
		parent := claimOne(t, s, wa)
		if parent.Build.ID == 0 {
			t.Fatal("the parent was not claimed")
		}
		force(t, s, "c")
		if cc := claimOne(t, s, wc); cc.Build.ID != 0 {
			t.Fatalf("c claimed build %d while the parent holds x", cc.Build.ID)
		}
		_, _, err := s.CreateBuildset(ctx, store.BuildsetInput{Reason: "triggered", Scheduler: "t",
			Builders: []string{"b"}, ParentBuild: &parent.Build.ID, ParentStep: 1})
		if err != nil {
			t.Fatal(err)
		}
		child := claimOne(t, s, wb)
		if child.Build.ID == 0 {
			t.Fatal("the triggered request waits behind c, which waits for the parent: a deadlock")
		}
		finish(t, s, child, build.Success)
		finish(t, s, parent, build.Success)
		if cc := claimOne(t, s, wc); cc.Build.ID == 0 {
			t.Fatal("c was not claimed once both ended")
		}
	})
}

// Once the build that triggered a request is being cancelled, the request
// is not handed out, even before the sweep that cancels it runs: a worker
// slot freed by the cancel must not start the child.
func TestChildOfACancelledBuildIsNotClaimed(t *testing.T) {
	eachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		apply(t, s, lockOrderState(map[string][2][]string{"a": {nil, nil}, "b": {nil, nil}}))
		wa, wb := login(t, s, "wa", "pw"), login(t, s, "wb", "pw")
		force(t, s, "a")
		parent := claimOne(t, s, wa)
		_, _, err := s.CreateBuildset(ctx, store.BuildsetInput{Reason: "triggered", Scheduler: "t",
			Builders: []string{"b"}, ParentBuild: &parent.Build.ID, ParentStep: 1})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.CancelBuild(ctx, parent.Build.ID, "no longer wanted"); err != nil {
			t.Fatal(err)
		}
		if child := claimOne(t, s, wb); child.Build.ID != 0 {
			t.Fatalf("build %d of the cancelled build's child request was handed out", child.Build.ID)
		}
		n, err := s.CancelOrphanedChildren(ctx)
		if err != nil || n != 1 {
			t.Fatalf("CancelOrphanedChildren = %d, %v; want the child request cancelled", n, err)
		}
	})
}
