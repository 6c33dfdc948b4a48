package chaos

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"time"
)

// FaultKind names a kind of fault the campaign injects.
type FaultKind string

// The faults: masters and workers killed, paused, or stopped gracefully
// with SIGTERM; a master's path to PostgreSQL cut, slowed or reset by its
// proxy; a worker's path to one master or to all of them reset, slowed or
// cut by its proxies; and PostgreSQL itself stopped and started again.
const (
	MasterKill      FaultKind = "master-kill"
	MasterPause     FaultKind = "master-pause"
	MasterTerm      FaultKind = "master-term"
	MasterBlackhole FaultKind = "master-blackhole"
	MasterDelay     FaultKind = "master-delay"
	MasterReset     FaultKind = "master-reset"
	WorkerKill      FaultKind = "worker-kill"
	WorkerPause     FaultKind = "worker-pause"
	WorkerTerm      FaultKind = "worker-term"
	WorkerBlackhole FaultKind = "worker-blackhole"
	WorkerDelay     FaultKind = "worker-delay"
	WorkerReset     FaultKind = "worker-reset"
	PostgresRestart FaultKind = "postgres-restart"
)

// AllFaults lists every kind of fault.
var AllFaults = []FaultKind{MasterKill, MasterPause, MasterTerm, MasterBlackhole, MasterDelay, MasterReset,
	WorkerKill, WorkerPause, WorkerTerm, WorkerBlackhole, WorkerDelay, WorkerReset, PostgresRestart}

// onMaster reports whether the fault hits a master (rather than a worker
// or PostgreSQL).
func (k FaultKind) onMaster() bool {
	switch k {
	case MasterKill, MasterPause, MasterTerm, MasterBlackhole, MasterDelay, MasterReset:
		return true
	}
	return false
}

// onLink reports whether the fault hits a worker's path to masters
// rather than the worker itself.
func (k FaultKind) onLink() bool {
	switch k {
	case WorkerBlackhole, WorkerDelay, WorkerReset:
		return true
	}
	return false
}

// ActionKind names a kind of workload action.
type ActionKind string

// The workload: forced builds, pushes to the watched branch,
// cancellations and configuration applies.
const (
	ActForce  ActionKind = "force"
	ActPush   ActionKind = "push"
	ActCancel ActionKind = "cancel"
	ActApply  ActionKind = "apply"
)

// Plan is a campaign decided in advance from its seed: the workload, the
// faults and the configurations, each at a time from the start. The same
// seed and duration always give the same plan; only the timing of the
// processes' answers varies between runs.
type Plan struct {
	Seed     int64
	Duration time.Duration
	// Workers are the names of the workers that are always configured;
	// SpareWorker comes and goes with the configurations.
	Workers     []string
	SpareWorker string
	Actions     []Action
	Faults      []Fault
	// Layouts are the configurations in order: the first is applied
	// before the masters start, each apply action applies the next.
	Layouts []Layout
}

// Action is one step of the workload. Pick chooses at run time among what
// exists then (a builder to force, a build to cancel); Master is the
// master to go through first.
type Action struct {
	At     time.Duration
	Kind   ActionKind
	Pick   int
	Master int
	// Layout is the index in Plan.Layouts an apply applies; API says
	// whether it goes through a master's API rather than the database.
	Layout int
	API    bool
}

// masterTargets is the number of ways a master fault picks its master:
// masters 0 to 2; the owner, when the fault starts, of each of the
// campaign's services (3 to 5); the supervisor (6).
const masterTargets = 7

// The ways a worker's link fault picks the masters it cuts the worker
// from, besides masters 0 to 2: every master, or the master that handed
// the worker its newest build when the fault starts.
const (
	linkAll         = -1
	linkDispatcher  = 3
	linkTargetCount = 5 // -1 to 3
)

// Fault is one fault of the schedule: what, on whom, when and how long.
type Fault struct {
	At     time.Duration
	For    time.Duration
	Kind   FaultKind
	Target int           // a worker's index, or a master's: see masterTargets
	Delay  time.Duration // for MasterDelay and WorkerDelay
	Crash  bool          // for PostgresRestart: crash rather than stop
	Link   int           // for a link fault: a master's index, linkAll or linkDispatcher
}

// Options shape a plan.
type Options struct {
	Seed     int64
	Duration time.Duration
	// Workers is how many always-configured workers run, 4 to 8; zero
	// lets the seed choose.
	Workers int
	// FaultGap is the mean time between two faults; 5 s if zero.
	FaultGap time.Duration
	// MasterTTL is the masters' time-to-live, which sets how long
	// pauses and cuts last.
	MasterTTL time.Duration
	// WorkerTTL is the workers' time-to-live; 6 s if zero, shorter than
	// the longest master faults, so that a worker must leave a master
	// that cannot serve it (see TestFaultWorkerStuckOnCutOffMaster).
	WorkerTTL time.Duration
	// LongOutages lets a third of the PostgreSQL restarts last longer
	// than the worker time-to-live (see
	// TestFaultWorkersLostAfterDatabaseOutage).
	LongOutages bool
}

func (o *Options) defaults() {
	if o.FaultGap <= 0 {
		o.FaultGap = 5 * time.Second
	}
	if o.MasterTTL <= 0 {
		o.MasterTTL = 4 * time.Second
	}
	if o.WorkerTTL <= 0 {
		o.WorkerTTL = 6 * time.Second
	}
}

// NewPlan makes the plan of a campaign. Separate random streams decide
// the workload, the faults and the configurations, so that changing one
// generator leaves the others' choices as they were.
func NewPlan(o Options) Plan {
	o.defaults()
	work := rand.New(rand.NewPCG(uint64(o.Seed), 1))
	faults := rand.New(rand.NewPCG(uint64(o.Seed), 2))
	configs := rand.New(rand.NewPCG(uint64(o.Seed), 3))

	p := Plan{Seed: o.Seed, Duration: o.Duration, SpareWorker: "wx"}
	n := o.Workers
	if n == 0 {
		n = 4 + work.IntN(5)
	}
	for i := range n {
		p.Workers = append(p.Workers, fmt.Sprintf("w%d", i+1))
	}
	p.Layouts = []Layout{initialLayout()}
	p.Actions = planWorkload(work, o.Duration)
	for i := range p.Actions {
		if p.Actions[i].Kind == ActApply {
			p.Layouts = append(p.Layouts, p.Layouts[len(p.Layouts)-1].mutate(configs))
			p.Actions[i].Layout = len(p.Layouts) - 1
		}
	}
	p.Faults = planFaults(faults, o)
	return p
}

// planWorkload spreads actions over the campaign: one every 0.3 to 0.9 s,
// mostly forced builds, and an apply every 8 to 20 s.
func planWorkload(r *rand.Rand, d time.Duration) []Action {
	var out []Action
	nextApply := between(r, 4*time.Second, 10*time.Second)
	for at := between(r, 500*time.Millisecond, time.Second); at < d; at += between(r, 300*time.Millisecond, 900*time.Millisecond) {
		a := Action{At: at, Pick: r.IntN(1 << 20), Master: r.IntN(3)}
		switch w := r.IntN(100); {
		case at >= nextApply:
			a.Kind, a.API = ActApply, r.IntN(2) == 0
			nextApply = at + between(r, 8*time.Second, 20*time.Second)
		case w < 55:
			a.Kind = ActForce
		case w < 75:
			a.Kind = ActPush
		default:
			a.Kind = ActCancel
		}
		out = append(out, a)
	}
	return out
}

// termDrain is how long a master stopped with SIGTERM may take to drain
// beyond its fault's time, during which no other master fault starts.
const termDrain = 5 * time.Second

// planFaults draws faults until the end of the campaign. At most one
// master is hit at a time, so that two always work; PostgreSQL restarts
// are rarer and never overlap a master's fault; a fault ends before the
// campaign does.
func planFaults(r *rand.Rand, o Options) []Fault {
	var out []Fault
	var masterFree, pgFree, lastPG time.Duration
	workerFree := map[int]time.Duration{}
	kinds := []struct {
		kind   FaultKind
		weight int
	}{
		{MasterKill, 12}, {MasterPause, 10}, {MasterTerm, 6}, {MasterBlackhole, 10}, {MasterDelay, 6},
		{MasterReset, 6}, {WorkerKill, 12}, {WorkerPause, 10}, {WorkerTerm, 6}, {WorkerBlackhole, 8},
		{WorkerDelay, 6}, {WorkerReset, 6}, {PostgresRestart, 6},
	}
	total := 0
	for _, k := range kinds {
		total += k.weight
	}
	at := between(r, 2*time.Second, 4*time.Second)
	for ; at < o.Duration; at += between(r, o.FaultGap/2, o.FaultGap*3/2) {
		w := r.IntN(total)
		var kind FaultKind
		for _, k := range kinds {
			if w < k.weight {
				kind = k.kind
				break
			}
			w -= k.weight
		}
		f := Fault{At: at, Kind: kind, Target: r.IntN(masterTargets)}
		switch kind {
		case MasterKill:
			f.For = between(r, 200*time.Millisecond, 3*time.Second)
		case MasterPause, MasterBlackhole:
			f.For = between(r, time.Second, o.MasterTTL+3*time.Second)
		case MasterDelay:
			f.For = between(r, 2*time.Second, 6*time.Second)
			f.Delay = between(r, 20*time.Millisecond, 400*time.Millisecond)
		case MasterReset:
			f.For = between(r, 100*time.Millisecond, 2*time.Second)
		case WorkerKill:
			f.Target = r.IntN(4)
			f.For = between(r, 200*time.Millisecond, o.WorkerTTL+2*time.Second)
		case WorkerPause:
			f.Target = r.IntN(4)
			f.For = between(r, 500*time.Millisecond, o.WorkerTTL+3*time.Second)
		case MasterTerm:
			// For is how long after SIGTERM the process is started again,
			// once it has ended.
			f.For = between(r, 500*time.Millisecond, 3*time.Second)
		case WorkerTerm:
			f.Target = r.IntN(4)
			f.For = between(r, 500*time.Millisecond, 3*time.Second)
		case WorkerBlackhole, WorkerReset:
			f.Target, f.Link = r.IntN(4), r.IntN(linkTargetCount)-1
			f.For = between(r, 500*time.Millisecond, o.WorkerTTL+3*time.Second)
		case WorkerDelay:
			f.Target, f.Link = r.IntN(4), r.IntN(linkTargetCount)-1
			f.For = between(r, 2*time.Second, 6*time.Second)
			f.Delay = between(r, 20*time.Millisecond, 400*time.Millisecond)
		case PostgresRestart:
			f.For = between(r, 200*time.Millisecond, 3*time.Second)
			f.Crash = r.IntN(2) == 0
			if long := between(r, o.WorkerTTL+2*time.Second, o.WorkerTTL+5*time.Second); r.IntN(3) == 0 && o.LongOutages {
				f.For = long
			}
		}
		end := at + f.For
		if end >= o.Duration || at < pgFree {
			continue
		}
		switch {
		case kind == PostgresRestart:
			if at < masterFree || (lastPG > 0 && at-lastPG < 25*time.Second) {
				continue
			}
			pgFree, masterFree, lastPG = end, end, at
		case kind.onMaster():
			if at < masterFree {
				continue
			}
			masterFree = end
			if kind == MasterTerm {
				masterFree += termDrain
			}
		default:
			if at < workerFree[f.Target] {
				continue
			}
			workerFree[f.Target] = end
		}
		out = append(out, f)
	}
	return out
}

// between draws a duration uniformly from [lo, hi).
func between(r *rand.Rand, lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(r.Int64N(int64(hi-lo)))
}

// Layout is one configuration of the campaign: its builders and whether
// the spare worker is configured.
type Layout struct {
	Builders []BuilderSpec
	Spare    bool
	// next numbers new builder slots.
	next int
}

// BuilderSpec is a builder of a layout. Its name is FAMILY-SLOT.vVERSION:
// a rename bumps the version and names the old name as a previous name.
type BuilderSpec struct {
	Family    string // "ci", "slow" or "locked"
	Slot      int
	Version   int
	Previous  string
	RetryLost bool
}

// Name is the builder's name.
func (b BuilderSpec) Name() string { return fmt.Sprintf("%s-%d.v%d", b.Family, b.Slot, b.Version) }

// families are the kinds of builder: quick two-step builds that the
// branch scheduler starts, slow builds to cancel and to catch in the
// middle of faults, and builds that hold the exclusive lock.
var families = []string{"ci", "slow", "locked"}

func initialLayout() Layout {
	l := Layout{Spare: true}
	for _, f := range families {
		l.Builders = append(l.Builders, BuilderSpec{Family: f, Slot: l.next, Version: 1, RetryLost: true})
		l.next++
	}
	l.Builders = append(l.Builders, BuilderSpec{Family: "ci", Slot: l.next, Version: 1})
	l.next++
	return l
}

// family returns the indexes of the layout's builders of family f.
func (l Layout) family(f string) []int {
	var out []int
	for i, b := range l.Builders {
		if b.Family == f {
			out = append(out, i)
		}
	}
	return out
}

// mutate returns the next configuration: a builder renamed, removed,
// added or changed, or the spare worker added or removed.
func (l Layout) mutate(r *rand.Rand) Layout {
	n := Layout{Builders: slices.Clone(l.Builders), Spare: l.Spare, next: l.next}
	for i := range n.Builders {
		n.Builders[i].Previous = ""
	}
	fam := families[r.IntN(len(families))]
	members := n.family(fam)
	switch w := r.IntN(100); {
	case w < 40:
		i := members[r.IntN(len(members))]
		n.Builders[i].Previous = n.Builders[i].Name()
		n.Builders[i].Version++
	case w < 60 && len(members) > 1:
		i := members[r.IntN(len(members))]
		n.Builders = slices.Delete(n.Builders, i, i+1)
	case w < 80 && len(members) < 3:
		n.Builders = append(n.Builders, BuilderSpec{Family: fam, Slot: n.next, Version: 1,
			RetryLost: r.IntN(2) == 0})
		n.next++
	case w < 90:
		i := members[r.IntN(len(members))]
		n.Builders[i].RetryLost = !n.Builders[i].RetryLost
	default:
		n.Spare = !n.Spare
	}
	return n
}

// Names returns the names of the layout's builders, sorted.
func (l Layout) Names() []string {
	var out []string
	for _, b := range l.Builders {
		out = append(out, b.Name())
	}
	slices.Sort(out)
	return out
}
