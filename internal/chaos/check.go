package chaos

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// The invariants of DESIGN.md as the checker names them.
const (
	InvAttemptOnce = "attempt-once"   // 3: no build attempt executed twice
	InvNoLostWork  = "no-lost-work"   // 3: every request ends, none silently lost
	InvChangeOnce  = "change-once"    // 5: every change recorded once
	InvNoStale     = "no-stale"       // 1: nothing retired shown as active
	InvOneOwner    = "one-owner"      // 2: one live owner per service within the bound
	InvFencing     = "fencing"        // 2: no write of a replaced owner accepted
	InvLockLimit   = "lock-limit"     // locks never oversubscribed
	InvSurvives    = "build-survives" // 4: a build outlives any master's death
	InvCampaign    = "campaign-sane"  // the campaign itself did what it meant to
)

// Violation is one breach of an invariant found in a history.
type Violation struct {
	Invariant string
	At        time.Time
	Message   string
}

func (v Violation) String() string { return v.Invariant + ": " + v.Message }

// Check verifies every invariant on the history and returns the
// violations found, in time order.
func Check(h *History) []Violation {
	var out []Violation
	for _, check := range []func(*History) []Violation{
		checkAttempts, checkRequests, checkChanges, checkStale, checkOwners, checkRunners, checkFencing,
		checkFencedRows, checkLocks, checkSurvival, checkHeals,
	} {
		out = append(out, check(h)...)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	return out
}

// buildsByID indexes the final builds.
func buildsByID(h *History) map[int64]Build {
	m := make(map[int64]Build, len(h.Final.Builds))
	for _, b := range h.Final.Builds {
		m[b.ID] = b
	}
	return m
}

// checkAttempts: every step of a build attempt ran at most once, every
// step that ran belongs to a build the database has, a build that
// succeeded really ran its steps, and one request never ran as two
// builds unless the first was lost and retried.
func checkAttempts(h *History) []Violation {
	var out []Violation
	builds := buildsByID(h)
	type key struct {
		build int64
		step  string
	}
	starts, ends := map[key]int{}, map[key]int{}
	first := map[int64]time.Time{}
	for _, m := range h.Markers {
		k := key{m.Build, m.Step}
		if m.Phase == "start" {
			starts[k]++
			if starts[k] == 2 {
				out = append(out, Violation{InvAttemptOnce, m.At,
					fmt.Sprintf("step %s of build %d (%s #%d) ran twice", m.Step, m.Build, m.Builder, m.Number)})
			}
		} else {
			ends[k]++
		}
		if t, ok := first[m.Build]; !ok || m.At.Before(t) {
			first[m.Build] = m.At
		}
		b, ok := builds[m.Build]
		switch {
		case !ok:
			if starts[k] == 1 && m.Phase == "start" {
				out = append(out, Violation{InvAttemptOnce, m.At,
					fmt.Sprintf("step %s ran for build %d, which the database does not hold", m.Step, m.Build)})
			}
		case b.Number != m.Number && m.Phase == "start":
			out = append(out, Violation{InvAttemptOnce, m.At, fmt.Sprintf(
				"step %s ran as %s #%d, but build %d is number %d", m.Step, m.Builder, m.Number, m.Build, b.Number)})
		}
	}
	for _, b := range h.Final.Builds {
		if b.Result != "success" {
			continue
		}
		ran := 0
		for k, n := range starts {
			if k.build == b.ID {
				ran += n
				if ends[k] == 0 {
					out = append(out, Violation{InvAttemptOnce, b.CreatedAt, fmt.Sprintf(
						"build %d (%s #%d) succeeded but its step %s never finished", b.ID, b.Builder, b.Number, k.step)})
				}
			}
		}
		if ran == 0 {
			out = append(out, Violation{InvAttemptOnce, b.CreatedAt, fmt.Sprintf(
				"build %d (%s #%d) succeeded without running a step", b.ID, b.Builder, b.Number)})
		}
	}
	perRequest := map[int64][]Build{}
	for _, b := range h.Final.Builds {
		perRequest[b.Request] = append(perRequest[b.Request], b)
	}
	for r, bs := range perRequest {
		var live []string
		for _, b := range bs {
			if b.Result != "retry" {
				live = append(live, fmt.Sprintf("%d (%s)", b.ID, b.Result))
			}
		}
		if len(live) > 1 {
			out = append(out, Violation{InvAttemptOnce, bs[len(bs)-1].CreatedAt, fmt.Sprintf(
				"request %d ran as builds %s, none of them but the last lost and retried", r, strings.Join(live, ", "))})
		}
	}
	return out
}

// checkRequests: after settling, every request ended complete through a
// finished build or cancelled with a reason; every lost build that was
// retried has exactly one successor; every build finished; every force a
// master acknowledged is in the database.
func checkRequests(h *History) []Violation {
	var out []Violation
	builds := buildsByID(h)
	requests := map[int64]Request{}
	for _, r := range h.Final.Requests {
		requests[r.ID] = r
		switch r.State {
		case "cancelled":
			if strings.TrimSpace(r.Reason) == "" {
				out = append(out, Violation{InvNoLostWork, r.At,
					fmt.Sprintf("request %d (%s) was cancelled without a reason", r.ID, r.Builder)})
			}
		case "complete":
			b, ok := builds[r.Build]
			switch {
			case r.Merged != 0:
			case !ok:
				out = append(out, Violation{InvNoLostWork, r.At,
					fmt.Sprintf("request %d (%s) is complete without a build", r.ID, r.Builder)})
			case b.Request != r.ID:
				out = append(out, Violation{InvNoLostWork, r.At,
					fmt.Sprintf("request %d is complete through build %d of request %d", r.ID, b.ID, b.Request)})
			case b.Result == "retry":
				out = append(out, Violation{InvNoLostWork, r.At,
					fmt.Sprintf("request %d is complete through build %d, which was lost and marked retry", r.ID, b.ID)})
			}
		default:
			if h.submittedAfterQuiet(r.At) {
				continue
			}
			out = append(out, Violation{InvNoLostWork, r.At, fmt.Sprintf(
				"request %d (%s) is still %s after the cluster settled", r.ID, r.Builder, r.State)})
		}
	}
	successors := map[int64][]int64{}
	for _, b := range h.Final.Builds {
		if b.RetryOf != 0 {
			successors[b.RetryOf] = append(successors[b.RetryOf], b.ID)
		}
	}
	for _, b := range h.Final.Builds {
		switch {
		case b.State != "finished" && h.submittedAfterQuiet(b.CreatedAt):
		case b.State != "finished":
			out = append(out, Violation{InvNoLostWork, b.CreatedAt, fmt.Sprintf(
				"build %d (%s #%d) is still %s after the cluster settled", b.ID, b.Builder, b.Number, b.State)})
		case (b.Result == "cancelled" || b.Result == "exception") && strings.TrimSpace(b.Reason) == "":
			out = append(out, Violation{InvNoLostWork, b.CreatedAt,
				fmt.Sprintf("build %d ended %s without a reason", b.ID, b.Result)})
		}
		next := successors[b.ID]
		switch {
		case b.Result == "retry" && len(next) != 1:
			out = append(out, Violation{InvNoLostWork, b.CreatedAt, fmt.Sprintf(
				"build %d was lost and marked retry, and has %d linked retries, want 1", b.ID, len(next))})
		case b.Result != "retry" && len(next) > 0:
			out = append(out, Violation{InvAttemptOnce, b.CreatedAt, fmt.Sprintf(
				"build %d ended %s yet was retried as %v", b.ID, b.Result, next)})
		}
		for _, n := range next {
			if nb := builds[n]; nb.Request != b.Request {
				out = append(out, Violation{InvNoLostWork, b.CreatedAt, fmt.Sprintf(
					"build %d of request %d was retried as build %d of request %d", b.ID, b.Request, n, nb.Request)})
			}
		}
	}
	for _, f := range h.Forces {
		if _, ok := requests[f.Request]; !ok {
			out = append(out, Violation{InvNoLostWork, f.At, fmt.Sprintf(
				"request %d, acknowledged by %s for %s, is not in the database", f.Request, f.Via, f.Builder)})
		}
	}
	return out
}

// submittedAfterQuiet reports whether work submitted at t came after the
// cluster was found quiet, and so may rightly be unfinished.
func (h *History) submittedAfterQuiet(t time.Time) bool {
	return !h.Quiet.IsZero() && t.After(h.Quiet)
}

// checkChanges: every pushed commit is recorded exactly once, and no
// change or due time made two buildsets of one scheduler.
func checkChanges(h *History) []Violation {
	var out []Violation
	type key struct{ repo, branch, rev string }
	seen := map[key]int{}
	for _, c := range h.Final.Changes {
		k := key{c.Repository, c.Branch, c.Revision}
		seen[k]++
		if seen[k] == 2 {
			out = append(out, Violation{InvChangeOnce, h.Settled, fmt.Sprintf(
				"revision %.10s of %s/%s is recorded more than once", c.Revision, c.Repository, c.Branch)})
		}
	}
	for _, p := range h.Pushes {
		if seen[key{"app", "main", p.Revision}] == 0 {
			out = append(out, Violation{InvChangeOnce, p.At,
				fmt.Sprintf("pushed revision %.10s was never recorded as a change", p.Revision)})
		}
	}
	type bsKey struct {
		scheduler string
		what      string
	}
	sets := map[bsKey]int64{}
	for _, bs := range h.Final.Buildsets {
		var k bsKey
		switch {
		case bs.Change != 0:
			k = bsKey{bs.Scheduler, fmt.Sprintf("change %d", bs.Change)}
		case bs.Scheduler == "tick":
			k = bsKey{bs.Scheduler, bs.Reason}
		default:
			continue
		}
		if prev, dup := sets[k]; dup {
			out = append(out, Violation{InvChangeOnce, bs.CreatedAt, fmt.Sprintf(
				"scheduler %s made buildsets %d and %d for one %s", k.scheduler, prev, bs.ID, k.what)})
		}
		sets[k] = bs.ID
	}
	return out
}

// checkStale: every list a master's API answered, once the propagation
// bound had passed since an apply and before the next one began, shows
// exactly that apply's builders and workers; and so does the database at
// the end.
func checkStale(h *History) []Violation {
	var out []Violation
	if len(h.Applies) == 0 {
		return []Violation{{InvCampaign, h.Started, "the history records no applied configuration"}}
	}
	for _, l := range h.Lists {
		i := -1
		for j, a := range h.Applies {
			if !a.At.Add(h.Bounds.Propagation).After(l.At) {
				i = j
			}
		}
		answered := l.Answered
		if answered.IsZero() {
			answered = l.At
		}
		if i < 0 || (i+1 < len(h.Applies) && !h.Applies[i+1].Started.After(answered)) {
			continue
		}
		a := h.Applies[i]
		if d := setDiff(a.Builders, l.Builders); d != "" {
			out = append(out, Violation{InvNoStale, l.At, fmt.Sprintf(
				"%s lists builders %s %s after apply %d", l.Master, d, l.At.Sub(a.At).Round(time.Millisecond), i)})
		}
		if d := setDiff(a.Workers, l.Workers); d != "" {
			out = append(out, Violation{InvNoStale, l.At, fmt.Sprintf(
				"%s lists workers %s %s after apply %d", l.Master, d, l.At.Sub(a.At).Round(time.Millisecond), i)})
		}
	}
	last := h.Applies[len(h.Applies)-1]
	if d := setDiff(last.Builders, h.Final.Builders); d != "" {
		out = append(out, Violation{InvNoStale, h.Settled, "the database's active builders are " + d})
	}
	if d := setDiff(last.Workers, h.Final.Workers); d != "" {
		out = append(out, Violation{InvNoStale, h.Settled, "the database's active workers are " + d})
	}
	return out
}

// setDiff describes how got differs from want, or returns "".
func setDiff(want, got []string) string {
	var extra, missing []string
	for _, g := range got {
		if !slices.Contains(want, g) {
			extra = append(extra, g)
		}
	}
	for _, w := range want {
		if !slices.Contains(got, w) {
			missing = append(missing, w)
		}
	}
	if len(extra) == 0 && len(missing) == 0 {
		return ""
	}
	return fmt.Sprintf("with %v that should not be active and without %v", extra, missing)
}

// clock shows a time as seconds since the campaign started.
func (h *History) clock(t time.Time) string {
	return fmt.Sprintf("+%.3fs", t.Sub(h.Started).Seconds())
}

// checkLocks: at no moment did more steps holding a lock run than the
// lock's max_holders allows (by the markers of the steps that hold
// locks, and ended), and no lock is held once the cluster settled.
func checkLocks(h *History) []Violation {
	type hold struct {
		build      int64
		start, end time.Time
	}
	starts := map[[2]string]Marker{}
	holds := map[string][]hold{}
	builds := buildsByID(h)
	for _, m := range h.Markers {
		if m.Lock == "" || h.lostWithStalledWorker(builds[m.Build], m.At) {
			continue
		}
		k := [2]string{fmt.Sprint(m.Build), m.Step}
		if m.Phase == "start" {
			starts[k] = m
		} else if s, ok := starts[k]; ok {
			holds[m.Lock] = append(holds[m.Lock], hold{m.Build, s.At, m.At})
		}
	}
	var out []Violation
	for lock, hs := range holds {
		limit := h.LockLimits[lock]
		if limit == 0 {
			limit = 1
		}
		sort.Slice(hs, func(i, j int) bool { return hs[i].start.Before(hs[j].start) })
		for i, b := range hs {
			var with []string
			for _, a := range hs[:i] {
				if b.start.Before(a.end) {
					with = append(with, fmt.Sprintf("%d (%s to %s)", a.build, h.clock(a.start), h.clock(a.end)))
				}
			}
			if len(with) >= limit {
				out = append(out, Violation{InvLockLimit, b.start, fmt.Sprintf(
					"build %d took lock %s (max %d holders) at %s while %s held it", b.build, lock, limit,
					h.clock(b.start), strings.Join(with, ", "))})
			}
		}
	}
	if h.Final.LockHolds != 0 {
		out = append(out, Violation{InvLockLimit, h.Settled,
			fmt.Sprintf("%d lock holds remain after the cluster settled", h.Final.LockHolds)})
	}
	return out
}

// lostWithStalledWorker reports whether build b was lost with its worker
// while a fault paused that worker (and its steps), or cut it off from
// every master, around time at. Its
// lock was rightly given to another build once the worker was declared
// lost; when the worker and its steps resume or reach a master again, the
// step may run on for a
// moment before the worker learns it lost the build, as with any lease,
// so its hold does not count against the lock's limit.
func (h *History) lostWithStalledWorker(b Build, at time.Time) bool {
	if b.Result != "retry" && b.Result != "exception" && b.Result != "cancelled" {
		return false
	}
	for _, f := range h.Faults {
		if (f.Kind == WorkerPause || f.cutsWorkerOff()) && f.Target == b.Worker && f.Start.Before(at) &&
			(f.End.IsZero() || !f.End.Before(b.CreatedAt)) {
			return true
		}
	}
	return false
}

// cutsWorkerOff reports whether the fault cut its worker off from every
// master, so that the cluster rightly declares it lost once the worker
// time-to-live has passed. A fault on one link must not lose a build:
// the worker goes to another master.
func (f FaultRun) cutsWorkerOff() bool {
	return (f.Kind == WorkerBlackhole || f.Kind == WorkerReset) && f.Link == "all"
}

// checkHeals: every fault was healed as planned. A heal fails when a
// process did not stop within its time after SIGTERM (a master that
// cannot finish draining, a worker that cannot stop its steps) or could
// not be started again; what followed was then not the campaign's plan.
func checkHeals(h *History) []Violation {
	var out []Violation
	for _, e := range h.Events {
		if e.Kind == "heal-failed" {
			out = append(out, Violation{InvCampaign, e.At, fmt.Sprintf("healing %s failed: %s", e.Target, e.Detail)})
		}
	}
	return out
}

// checkSurvival: a build is lost (exception or retry) only when its
// worker was: killed, paused, stopped, cut off from every master, ended,
// or removed from the configuration while the build ran. Masters dying,
// hanging or losing the database must not lose a build, nor a worker's
// path to one master failing, nor a slow path to all of them.
func checkSurvival(h *History) []Violation {
	var out []Violation
	for _, b := range h.Final.Builds {
		if b.Result != "exception" && b.Result != "retry" {
			continue
		}
		from, to := b.CreatedAt.Add(-time.Second), b.FinishedAt.Add(time.Second)
		if b.FinishedAt.IsZero() {
			to = h.Settled
		}
		if b.Worker == "" || h.workerDisturbed(b.Worker, from, to) || h.handOutLost(b) {
			continue
		}
		out = append(out, Violation{InvSurvives, b.FinishedAt, fmt.Sprintf(
			"build %d (%s #%d) on %s ended %s (%q) though nothing happened to its worker from %s to %s",
			b.ID, b.Builder, b.Number, b.Worker, b.Result, b.Reason, h.clock(b.CreatedAt), h.clock(b.FinishedAt))})
	}
	return out
}

// handOutLost reports whether build b never reached its worker because
// the answer that handed it out was lost: no step of it started, and a
// fault hit the path between the worker and the master that handed it
// out (the worker's link to that master, or that master) as it was
// handed out. Such a build is retried as a new, linked build, as
// DESIGN.md allows.
func (h *History) handOutLost(b Build) bool {
	if b.Steps > 0 || b.Result != "retry" {
		return false
	}
	for _, f := range h.Faults {
		onPath := f.Kind.onLink() && f.Target == b.Worker && (f.Link == b.Master || f.Link == "all") ||
			f.Kind.onMaster() && f.Target == b.Master || f.Kind == PostgresRestart
		end := f.End
		if end.IsZero() {
			end = h.Healed
		}
		if onPath && f.Start.Before(b.CreatedAt.Add(2*time.Second)) && end.After(b.CreatedAt) {
			return true
		}
	}
	return false
}

// workerDisturbed reports whether the named worker was under a fault,
// ended, or was left out of an applied configuration between from and to.
func (h *History) workerDisturbed(worker string, from, to time.Time) bool {
	for _, f := range h.Faults {
		end := f.End
		if end.IsZero() {
			end = h.Healed
		}
		if f.Kind.onLink() && !f.cutsWorkerOff() {
			continue
		}
		if f.Target == worker && f.Start.Before(to) && end.After(from) {
			return true
		}
	}
	for _, e := range h.Events {
		if e.Kind == "exit" && e.Target == worker && e.At.After(from) && e.At.Before(to) {
			return true
		}
	}
	for _, a := range h.Applies {
		if a.At.After(from) && a.Started.Before(to) && !slices.Contains(a.Workers, worker) {
			return true
		}
	}
	return false
}
