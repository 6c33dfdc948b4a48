package schedule

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/regent-ci/regent/internal/cluster"
	"github.com/regent-ci/regent/internal/config"
	"github.com/regent-ci/regent/internal/store"
)

// DefaultMaxWait is the longest a [Timed] scheduler sleeps between looks
// at the database when its config does not say.
const DefaultMaxWait = time.Second

// TimedConfig configures a [Timed] scheduler.
type TimedConfig struct {
	Store *store.Store
	// Scheduler is the definition to run, from the active generation: a
	// cron or periodic scheduler, or a branch or any-branch scheduler with
	// a tree-stable timer.
	Scheduler config.Scheduler
	// Repo is the scheduler's repository, for change-driven schedulers.
	Repo config.Repo
	// Fence is the fence of the clustered service "scheduler:NAME" that
	// the master owns; every write is made under it. The zero Fence
	// writes unconditionally, for a process alone on its database.
	Fence store.Fence
	// Now tells the time; time.Now when nil. Tests move it by hand and
	// call RunOnce.
	Now func() time.Time
	// Changes, when set, wakes the scheduler when changes are recorded;
	// Requests is notified when it creates build requests.
	Changes  *cluster.Wake
	Requests *cluster.Wake
	// MaxWait is the longest the scheduler sleeps between looks at the
	// database; DefaultMaxWait when zero.
	MaxWait time.Duration
	Logger  *slog.Logger
}

// Timed runs one timed scheduler: it builds at the times of a cron
// expression, every interval, or when a branch has been quiet for the
// tree-stable timer. Its state is in the database (see the package
// documentation), so stopping it and starting another on any master
// carries on where it was.
type Timed struct {
	cfg    TimedConfig
	log    *slog.Logger
	cron   cron.Schedule
	loc    *time.Location
	filter filter

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// NewTimed checks cfg and fills its defaults.
func NewTimed(cfg TimedConfig) (*Timed, error) {
	sc := cfg.Scheduler
	if cfg.Store == nil {
		return nil, errors.New("timed scheduler: Store is required")
	}
	if !cluster.TimedScheduler(sc) {
		return nil, fmt.Errorf("timed scheduler: %s scheduler %q has no timer", sc.Kind, sc.Name)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Requests == nil {
		cfg.Requests = cluster.NewWake()
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = DefaultMaxWait
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	t := &Timed{cfg: cfg, log: cfg.Logger.With("component", "schedule", "scheduler", sc.Name),
		filter: newFilter(sc)}
	if sc.Kind == config.SchedulerCron {
		var err error
		if t.cron, err = cron.ParseStandard(sc.Cron); err != nil {
			return nil, fmt.Errorf("scheduler %q: cron %q: %w", sc.Name, sc.Cron, err)
		}
		if t.loc, err = time.LoadLocation(sc.Timezone); err != nil || sc.Timezone == "" {
			return nil, fmt.Errorf("scheduler %q: time zone %q: %v", sc.Name, sc.Timezone, err)
		}
	}
	return t, nil
}

// sameTimed reports whether a Timed made from cfg runs sc on repo.
func sameTimed(cfg TimedConfig, sc config.Scheduler, repo config.Repo) bool {
	return reflect.DeepEqual(cfg.Scheduler, sc) && reflect.DeepEqual(cfg.Repo, repo)
}

// Start runs the scheduler until Stop or ctx ends. It returns at once.
func (t *Timed) Start(ctx context.Context) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done != nil {
		return
	}
	ctx, t.cancel = context.WithCancel(ctx)
	t.done = make(chan struct{})
	go t.loop(ctx, t.done)
}

// Stop ends the scheduler and waits for it; it may be called many times,
// and before Start.
func (t *Timed) Stop() {
	t.mu.Lock()
	cancel, done := t.cancel, t.done
	t.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

func (t *Timed) loop(ctx context.Context, done chan struct{}) {
	defer close(done)
	for {
		var changed <-chan struct{}
		if t.cfg.Changes != nil {
			changed = t.cfg.Changes.C()
		}
		next, err := t.RunOnce(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, store.ErrFenced):
			// The service moved to another master, or the configuration
			// removed it; the master stops it once it learns so, and until
			// then every write is refused.
			t.log.Info("timed scheduler fenced: another master owns it now, or it was removed",
				"fence", t.cfg.Fence)
		case err != nil:
			t.log.Error("timed scheduler failed", "err", err)
		}
		wait := min(max(next.Sub(t.cfg.Now()), 10*time.Millisecond), t.cfg.MaxWait)
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-changed:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// RunOnce does what is due at the present time and returns when something
// will next be due.
func (t *Timed) RunOnce(ctx context.Context) (time.Time, error) {
	if t.cfg.Scheduler.TreeStableTimer > 0 {
		return t.runStable(ctx)
	}
	return t.runClock(ctx)
}

// next returns the first due time of a cron or periodic scheduler after
// after.
func (t *Timed) next(after time.Time) time.Time {
	if t.cron != nil {
		return t.cron.Next(after.In(t.loc)).UTC()
	}
	return after.Add(t.cfg.Scheduler.Interval.D())
}

// runClock runs a cron or periodic scheduler: when a due time has passed
// since the last run, it builds once, whatever the number of due times
// that passed, and counts the next one from now.
func (t *Timed) runClock(ctx context.Context) (time.Time, error) {
	sc, now := t.cfg.Scheduler, t.cfg.Now()
	last, err := t.cfg.Store.LastRun(ctx, sc.Name)
	if err != nil {
		return now.Add(t.cfg.MaxWait), err
	}
	if last.IsZero() {
		// The apply that adds a scheduler records it as having run then;
		// one added before that rule counts from now.
		_, _, err := t.cfg.Store.RecordRun(ctx, t.cfg.Fence, sc.Name, now, now, store.BuildsetInput{})
		return t.next(now), err
	}
	due := t.next(last)
	if due.After(now) {
		return due, nil
	}
	in := store.BuildsetInput{
		Reason:     fmt.Sprintf("scheduler %s: due at %s", sc.Name, due.UTC().Format(time.RFC3339)),
		Scheduler:  sc.Name,
		Properties: timedProperties(sc),
		Builders:   sc.Builders,
	}
	bs, ran, err := t.cfg.Store.RecordRun(ctx, t.cfg.Fence, sc.Name, due, now, in)
	if err != nil {
		return now.Add(t.cfg.MaxWait), err
	}
	if ran {
		t.log.Info("buildset created", "buildset", bs.ID, "due", due, "late", now.Sub(due).Round(time.Millisecond))
		t.cfg.Requests.Notify()
	}
	return t.next(now), nil
}

// timedProperties are the properties of a build a clock started.
func timedProperties(sc config.Scheduler) map[string]string {
	p := map[string]string{}
	for k, v := range sc.Properties {
		p[k] = v
	}
	p["scheduler"] = sc.Name
	return p
}

// runStable runs a branch or any-branch scheduler with a tree-stable
// timer: new matching changes arm (or push back) their branch's timer to
// the time they were recorded plus the timer, and each timer whose
// deadline has passed builds its newest change.
func (t *Timed) runStable(ctx context.Context) (time.Time, error) {
	sc := t.cfg.Scheduler
	if err := t.armTimers(ctx); err != nil {
		return t.cfg.Now().Add(t.cfg.MaxWait), err
	}
	timers, err := t.cfg.Store.SchedulerTimers(ctx, sc.Name)
	if err != nil {
		return t.cfg.Now().Add(t.cfg.MaxWait), err
	}
	now := t.cfg.Now()
	next := now.Add(t.cfg.MaxWait)
	for _, tm := range timers {
		if tm.Deadline.After(now) {
			next = minTime(next, tm.Deadline)
			continue
		}
		if err := t.fire(ctx, tm); err != nil {
			return now.Add(t.cfg.MaxWait), err
		}
	}
	return next, nil
}

// armTimers reads the changes after the scheduler's cursor and arms the
// timers of the branches they move.
func (t *Timed) armTimers(ctx context.Context) error {
	sc := t.cfg.Scheduler
	cursor, err := t.cfg.Store.SchedulerCursor(ctx, sc.Name)
	if err != nil {
		return err
	}
	for {
		changes, err := t.cfg.Store.ChangesAfter(ctx, cursor, changeBatch)
		if err != nil || len(changes) == 0 {
			return err
		}
		newest, _, order := newestPerBranch(t.filter, changes)
		timers := make([]store.SchedulerTimer, 0, len(order))
		for _, branch := range order {
			c := newest[branch]
			timers = append(timers, store.SchedulerTimer{Branch: branch, ChangeID: c.ID,
				Deadline: c.CreatedAt.Add(sc.TreeStableTimer.D())})
		}
		cursor = changes[len(changes)-1].ID
		if err := t.cfg.Store.ArmTimers(ctx, t.cfg.Fence, sc.Name, timers, cursor); err != nil {
			return err
		}
		for _, tm := range timers {
			t.log.Debug("tree-stable timer armed", "branch", tm.Branch, "change", tm.ChangeID,
				"deadline", tm.Deadline)
		}
	}
}

// fire builds the newest change of an expired timer.
func (t *Timed) fire(ctx context.Context, tm store.SchedulerTimer) error {
	sc := t.cfg.Scheduler
	c, err := t.cfg.Store.Change(ctx, tm.ChangeID)
	if err != nil {
		return err
	}
	in := changeBuildset(sc, t.cfg.Repo, c)
	in.Reason = fmt.Sprintf("scheduler %s: %s quiet for %s; building %.12s", sc.Name, c.Branch,
		sc.TreeStableTimer.D(), c.Revision)
	bs, fired, err := t.cfg.Store.FireTimer(ctx, t.cfg.Fence, sc.Name, tm, in)
	if err != nil || !fired {
		return err
	}
	t.log.Info("buildset created", "buildset", bs.ID, "branch", tm.Branch, "change", c.ID,
		"revision", c.Revision, "late", t.cfg.Now().Sub(tm.Deadline).Round(time.Millisecond))
	t.cfg.Requests.Notify()
	return nil
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
