package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/regent-ci/regent/internal/config"
	"github.com/regent-ci/regent/internal/store"
)

// schedulerState is state() with a scheduler of each kind that keeps
// durable state: a branch scheduler, a tree-stable one, a periodic one and
// a dependent one.
func schedulerState() *config.State {
	st := state()
	st.Repos = []config.Repo{{Name: "app", URL: "https://git.example.test/app.git", Branches: []string{"main"}}}
	st.Schedulers = []config.Scheduler{
		{Name: "on-main", Kind: config.SchedulerBranch, Repo: "app", Branch: "main", Builders: []string{"unit"}},
		{Name: "stable", Kind: config.SchedulerBranch, Repo: "app", Branch: "main", Builders: []string{"unit"},
			TreeStableTimer: config.Duration(time.Minute)},
		{Name: "hourly", Kind: config.SchedulerPeriodic, Builders: []string{"unit"},
			Interval: config.Duration(time.Hour)},
		{Name: "after-unit", Kind: config.SchedulerDependent, Upstream: []string{"unit"},
			Builders: []string{"deploy"}},
	}
	return st
}

// without returns st without the schedulers named.
func without(st *config.State, names ...string) *config.State {
	var kept []config.Scheduler
	for _, sc := range st.Schedulers {
		drop := false
		for _, n := range names {
			drop = drop || sc.Name == n
		}
		if !drop {
			kept = append(kept, sc)
		}
	}
	st.Schedulers = kept
	return st
}

func cursorOf(t *testing.T, s *store.Store, scheduler string) int64 {
	t.Helper()
	id, err := s.SchedulerCursor(context.Background(), scheduler)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func lastRunOf(t *testing.T, s *store.Store, scheduler string) time.Time {
	t.Helper()
	at, err := s.LastRun(context.Background(), scheduler)
	if err != nil {
		t.Fatal(err)
	}
	return at
}

// A scheduler starts when the generation that adds it is applied, not
// when a master first runs it: its cursor is the newest change at the
// apply, so changes recorded after the apply and before its first run are
// still ahead of it; a periodic scheduler counts its first run from the
// apply; a dependent one starts at the newest buildset of the apply.
func TestAppliedSchedulerStartsAtTheApply(t *testing.T) {
	eachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		apply(t, s, state())
		before := recordChanges(t, s, "r1")
		bs := force(t, s, "unit")
		earliest := time.Now().Add(-time.Minute) // generous for clock skew with PostgreSQL
		apply(t, s, schedulerState())
		latest := time.Now().Add(time.Minute)
		recordChanges(t, s, "r2", "r3")

		for _, name := range []string{"on-main", "stable"} {
			if got := cursorOf(t, s, name); got != before[0].ID {
				t.Errorf("cursor of %s = %d, want %d, the newest change when it was applied", name, got, before[0].ID)
			}
		}
		if at := lastRunOf(t, s, "hourly"); at.Before(earliest) || at.After(latest) {
			t.Errorf("periodic scheduler counts from %v, want the apply, between %v and %v", at, earliest, latest)
		}
		pos, ok, err := s.SchedulerPosition(ctx, "after-unit", "upstream")
		if err != nil || !ok || pos != bs.ID {
			t.Errorf("dependent position = %d, %v, %v; want buildset %d, the newest at the apply", pos, ok, err, bs.ID)
		}
	})
}

// A scheduler removed and later added back is a new scheduler: it starts
// at the apply that brings it back, and nothing recorded while it was
// absent is built, nor is a run it missed meanwhile made. A scheduler kept
// across generations keeps its state, even when its definition changes.
func TestReaddedSchedulerStartsAfresh(t *testing.T) {
	eachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		apply(t, s, schedulerState())
		first := recordChanges(t, s, "r1")[0]
		for _, name := range []string{"on-main", "stable"} {
			if err := s.SetSchedulerCursor(ctx, name, first.ID); err != nil {
				t.Fatal(err)
			}
		}
		ran := time.Now().Add(-48 * time.Hour).Truncate(time.Second)
		if _, _, err := s.RecordRun(ctx, store.Fence{}, "hourly", ran, ran, store.BuildsetInput{}); err != nil {
			t.Fatal(err)
		}
		if err := s.ArmTimers(ctx, store.Fence{}, "stable", []store.SchedulerTimer{
			{Branch: "main", ChangeID: first.ID, Deadline: time.Now().Add(time.Minute)}}, first.ID); err != nil {
			t.Fatal(err)
		}

		// on-main is kept with a new definition; the others go.
		changed := without(schedulerState(), "stable", "hourly", "after-unit")
		changed.Schedulers[0].Builders = []string{"unit", "deploy"}
		apply(t, s, changed)
		if n := count(t, s, "scheduler_cursors", "scheduler = 'stable'") +
			count(t, s, "scheduler_state", "scheduler IN ('stable', 'hourly', 'after-unit')"); n != 0 {
			t.Errorf("%d rows of state left for retired schedulers, want none", n)
		}
		missed := recordChanges(t, s, "r2", "r3", "r4")
		bs := force(t, s, "unit")

		apply(t, s, schedulerState())
		if got := cursorOf(t, s, "on-main"); got != first.ID {
			t.Errorf("kept scheduler's cursor = %d, want %d: it must still build %d changes", got, first.ID, len(missed))
		}
		if got := cursorOf(t, s, "stable"); got != missed[2].ID {
			t.Errorf("re-added scheduler's cursor = %d, want %d: changes made while it was absent are not its own",
				got, missed[2].ID)
		}
		if timers, err := s.SchedulerTimers(ctx, "stable"); err != nil || len(timers) != 0 {
			t.Errorf("re-added scheduler's timers = %+v, %v; want none", timers, err)
		}
		if at := lastRunOf(t, s, "hourly"); !at.After(ran.Add(47 * time.Hour)) {
			t.Errorf("re-added periodic scheduler counts from %v, its run before it was removed", at)
		}
		if pos, ok, err := s.SchedulerPosition(ctx, "after-unit", "upstream"); err != nil || !ok || pos != bs.ID {
			t.Errorf("re-added dependent position = %d, %v, %v; want %d", pos, ok, err, bs.ID)
		}
	})
}

// recordChanges records one change on main of repository app per
// revision and returns them.
func recordChanges(t *testing.T, s *store.Store, revisions ...string) []store.Change {
	t.Helper()
	var cs []store.Change
	for _, r := range revisions {
		cs = append(cs, testChange("main", r))
	}
	added, err := s.RecordPoll(context.Background(), "app", nil, cs)
	if err != nil || len(added) != len(cs) {
		t.Fatalf("record %v: %d added, %v", revisions, len(added), err)
	}
	return added
}
