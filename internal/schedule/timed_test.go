package schedule

import (
	"errors"
	"testing"
	"time"

	"github.com/regent-ci/regent/internal/config"
	"github.com/regent-ci/regent/internal/store"
)

func stableState() *config.State {
	return &config.State{Schedulers: []config.Scheduler{
		{Name: "stable", Kind: config.SchedulerBranch, Repo: "app", Branch: "main",
			Builders: []string{"unit", "lint"}, TreeStableTimer: config.Duration(5 * time.Second)},
	}}
}

// Must-show 3 at the package level: a tree-stable timer of 5 s, three
// pushes 2 s apart, then the owner of the scheduler is replaced (its
// fence taken away, as when its master is killed): exactly one buildset,
// for the last push, made by the new owner about 5 s after it.
func TestTreeStableTimerSurvivesTheOwnersReplacement(t *testing.T) {
	t.Parallel()
	e := newEnv(t, stableState())
	t0 := time.Now().Truncate(time.Second)
	c := newClock(t0)
	first := e.timed("stable", e.fence("stable", 1), c)
	if _, err := first.RunOnce(e.ctx); err != nil { // nothing to do yet
		t.Fatal(err)
	}

	var last store.Change
	for i := range 3 {
		at := t0.Add(time.Duration(2*i) * time.Second)
		last = e.record("main", nil)[0]
		e.setRecordedAt(last.ID, at)
		c.Set(at.Add(500 * time.Millisecond))
		next, err := first.RunOnce(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := at.Add(5 * time.Second); next.After(want) {
			t.Fatalf("after push %d next wake %v, want by the deadline %v", i, next, want)
		}
		if n := len(e.buildsets("stable")); n != 0 {
			t.Fatalf("a buildset before the branch was quiet, after push %d", i)
		}
	}

	// The owner dies: another master gets the service with a new token.
	second := e.timed("stable", e.fence("stable", 2), c)
	c.Set(t0.Add(4*time.Second + 4900*time.Millisecond))
	if _, err := second.RunOnce(e.ctx); err != nil || len(e.buildsets("stable")) != 0 {
		t.Fatalf("before the deadline: %v, buildsets %d", err, len(e.buildsets("stable")))
	}
	c.Set(t0.Add(9 * time.Second))
	if _, err := first.RunOnce(e.ctx); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("the replaced owner ran with err %v, want ErrFenced", err)
	}
	if _, err := second.RunOnce(e.ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := second.RunOnce(e.ctx); err != nil {
		t.Fatal(err)
	}
	sets := e.buildsets("stable")
	if len(sets) != 1 || *sets[0].ChangeID != last.ID || len(sets[0].Requests) != 2 {
		t.Fatalf("buildsets = %+v, want one for the last push", sets)
	}
	timers, _ := e.store.SchedulerTimers(e.ctx, "stable")
	if len(timers) != 0 {
		t.Fatalf("timers left armed: %+v", timers)
	}
}

// A change recorded while nobody owned the scheduler still gets its timer
// from the next owner, counted from when it was recorded.
func TestTreeStableTimerForAChangeNoOwnerSaw(t *testing.T) {
	t.Parallel()
	e := newEnv(t, stableState())
	t0 := time.Now().Truncate(time.Second)
	c := newClock(t0)
	first := e.timed("stable", e.fence("stable", 1), c)
	if _, err := first.RunOnce(e.ctx); err != nil {
		t.Fatal(err)
	}
	ch := e.record("main", nil)[0]
	e.setRecordedAt(ch.ID, t0)
	second := e.timed("stable", e.fence("stable", 2), c)
	c.Set(t0.Add(20 * time.Second))
	if _, err := second.RunOnce(e.ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(e.buildsets("stable")); n != 1 {
		t.Fatalf("buildsets = %d, want 1 as soon as the new owner looks", n)
	}
}

func periodicState() *config.State {
	return &config.State{Schedulers: []config.Scheduler{
		{Name: "every5s", Kind: config.SchedulerPeriodic, Builders: []string{"unit"},
			Interval: config.Duration(5 * time.Second), Properties: map[string]string{"suite": "all"}},
		{Name: "nightly", Kind: config.SchedulerCron, Builders: []string{"lint"},
			Cron: "30 2 * * *", Timezone: "Europe/Paris"},
	}}
}

// Must-show 4 at the package level: a periodic scheduler every 5 s whose
// only master is stopped for 20 s runs once when it comes back, not four
// times, then on schedule.
func TestPeriodicRunsMissedRunsOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, periodicState())
	t0 := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	e.setLastRun("every5s", t0)
	c := newClock(t0)
	p := e.timed("every5s", e.fence("every5s", 1), c)
	at := func(d time.Duration) time.Time {
		t.Helper()
		c.Set(t0.Add(d))
		next, err := p.RunOnce(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		return next
	}
	if next := at(0); !next.Equal(t0.Add(5 * time.Second)) {
		t.Fatalf("at the apply: next %v, want in 5s", next)
	}
	if n := len(e.buildsets("every5s")); n != 0 {
		t.Fatalf("a buildset before the first due time")
	}
	at(5 * time.Second)
	at(6 * time.Second)
	if n := len(e.buildsets("every5s")); n != 1 {
		t.Fatalf("buildsets after 6s = %d, want 1", n)
	}

	// The master is stopped from 6s to 26s; a new one takes over.
	p = e.timed("every5s", e.fence("every5s", 2), c)
	if next := at(26 * time.Second); !next.Equal(t0.Add(31 * time.Second)) {
		t.Fatalf("after the outage next %v, want 5s after the catch-up run", next)
	}
	at(27 * time.Second)
	if n := len(e.buildsets("every5s")); n != 2 {
		t.Fatalf("buildsets after the outage = %d, want 2 (one catch-up run)", n)
	}
	at(31 * time.Second)
	sets := e.buildsets("every5s")
	if len(sets) != 3 || sets[2].Properties["suite"] != "all" || sets[2].Properties["scheduler"] != "every5s" {
		t.Fatalf("buildsets = %+v, want 3, the last on schedule", sets)
	}
}

// Cron follows the same rule, in its time zone: runs missed over days are
// made once, and the next is the next local time.
func TestCronRunsMissedRunsOnceInItsTimeZone(t *testing.T) {
	t.Parallel()
	e := newEnv(t, periodicState())
	t0 := time.Date(2024, 1, 10, 0, 0, 0, 0, time.UTC)
	e.setLastRun("nightly", t0)
	c := newClock(t0)
	n := e.timed("nightly", e.fence("nightly", 1), c)
	next, err := n.RunOnce(e.ctx)
	// 02:30 in Paris is 01:30 UTC in winter.
	if err != nil || !next.Equal(time.Date(2024, 1, 10, 1, 30, 0, 0, time.UTC)) {
		t.Fatalf("next = %v, %v", next, err)
	}
	c.Set(time.Date(2024, 1, 13, 12, 0, 0, 0, time.UTC)) // three nights missed
	if next, err = n.RunOnce(e.ctx); err != nil || !next.Equal(time.Date(2024, 1, 14, 1, 30, 0, 0, time.UTC)) {
		t.Fatalf("after the outage next = %v, %v", next, err)
	}
	if _, err := n.RunOnce(e.ctx); err != nil {
		t.Fatal(err)
	}
	if sets := e.buildsets("nightly"); len(sets) != 1 {
		t.Fatalf("buildsets = %d, want one catch-up run", len(sets))
	}

	// An owner that was replaced writes nothing.
	e.fence("nightly", 2)
	c.Set(time.Date(2024, 1, 15, 12, 0, 0, 0, time.UTC))
	if _, err := n.RunOnce(e.ctx); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("fenced run: %v", err)
	}
	if sets := e.buildsets("nightly"); len(sets) != 1 {
		t.Fatalf("the fenced owner made a buildset")
	}
}

func TestNewTimedRefusesUntimedSchedulers(t *testing.T) {
	t.Parallel()
	_, err := NewTimed(TimedConfig{Store: &store.Store{}, Scheduler: config.Scheduler{Name: "x", Kind: config.SchedulerBranch}})
	if err == nil {
		t.Fatal("NewTimed accepted a branch scheduler without timer")
	}
}

// The service runs timed schedulers itself when asked, and the loop of a
// started Timed builds on its own.
func TestTimedLoopsBuild(t *testing.T) {
	t.Parallel()
	st := periodicState()
	st.Schedulers[0].Interval = config.Duration(200 * time.Millisecond)
	e := newEnv(t, st)
	s := e.service(true)
	s.Start(e.ctx)
	defer s.Stop()
	deadline := time.Now().Add(10 * time.Second)
	for len(e.buildsets("every5s")) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the service made no periodic buildsets")
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.Stop()

	tm := e.timed("every5s", store.Fence{}, &clock{now: time.Now()})
	tm.cfg.Now = time.Now
	before := len(e.buildsets("every5s"))
	tm.Start(e.ctx)
	defer tm.Stop()
	for len(e.buildsets("every5s")) <= before {
		if time.Now().After(deadline.Add(10 * time.Second)) {
			t.Fatal("a started Timed made no buildset")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
