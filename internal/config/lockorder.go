package config

import (
	"fmt"
	"slices"
	"strings"
)

// checkLockOrder refuses locks that builds could take in an order that
// deadlocks. A build holds its builder's locks from its start to its end,
// and while it holds them it may wait for more: for the locks of a step
// before that step runs, and, at a trigger step that waits, for every lock
// the triggered builds need. That gives a graph over locks, with an edge
// from each held lock to each awaited one. A cycle in it means two builds
// can each hold what the other waits for; an edge from a lock to itself
// means a build waits for builds that need the lock it holds. The store
// never grants a place held back for a build that has not started to a
// running build's step ahead of it, so these are the only waits that can
// close a circle, and a configuration without such a cycle cannot
// deadlock on its locks.
func (ev *evaluator) checkLockOrder(cat *catalog) {
	needs := lockNeeds(ev.decl.builders, cat)
	graph := map[string][]edge{}
	links := 0
	add := func(from, to string, pos Pos, via, builder string) bool {
		if links++; links > maxStateItems {
			return false
		}
		graph[from] = append(graph[from], edge{to: to, pos: pos, via: via, builder: builder})
		return true
	}
	for _, d := range ev.decl.builders {
		b := &d.b
		if len(b.Locks) == 0 {
			continue
		}
		for _, st := range b.Steps {
			var awaited []string
			var how string
			switch {
			case len(st.Locks) > 0:
				awaited, how = st.Locks, "takes it in step %q"
			case st.Kind == StepTrigger && st.Wait:
				awaited, how = triggeredNeeds(st, cat, needs), "waits in step %q for builds that take it"
			}
			for _, held := range b.Locks {
				for _, to := range awaited {
					if to == held && len(st.Locks) > 0 {
						continue // a build's own lock counts as held for its steps
					}
					via := fmt.Sprintf("builder %q holds %q and "+how, b.Name, held, st.Name)
					if !add(held, to, st.Pos, via, b.Name) {
						ev.errorf(st.Pos, kindBuilder, b.Name, "locks are awaited more than %d times "+
							"in all; the configuration is too large to check the order of its locks",
							maxStateItems)
						return
					}
				}
			}
		}
	}
	for _, component := range cycles(graph) {
		path := cyclePath(graph, component)
		if len(path) == 0 {
			continue
		}
		var msg strings.Builder
		fmt.Fprintf(&msg, "lock %q", path[0].from)
		for _, e := range path {
			fmt.Fprintf(&msg, " -> %q (%s)", e.to, e.via)
		}
		ev.errorf(path[0].pos, kindBuilder, path[0].builder,
			"locks can deadlock: builds could each hold a lock the other waits for: %s; "+
				"take these locks in one order everywhere, or all at the builder", msg.String())
	}
}

// triggeredNeeds returns the locks the builds a trigger step starts may
// take.
func triggeredNeeds(st Step, cat *catalog, needs map[string][]string) []string {
	var out []string
	for _, s := range st.Schedulers {
		if sched, ok := cat.schedulers[s]; ok && sched.Kind == SchedulerTriggerable {
			for _, b := range sched.Builders {
				out = append(out, needs[b]...)
			}
		}
	}
	return sortedSet(out)
}

// lockNeeds returns, for each builder, every lock one of its builds may
// take or wait for: its own, its steps', and through trigger steps that
// wait, those of the builds they start. Trigger cycles are refused
// elsewhere; here a builder met again on its own path adds nothing.
func lockNeeds(builders []*builderDecl, cat *catalog) map[string][]string {
	byName := make(map[string]*Builder, len(builders))
	for _, d := range builders {
		byName[d.b.Name] = &d.b
	}
	needs := map[string][]string{}
	visiting := map[string]bool{}
	var visit func(name string) []string
	visit = func(name string) []string {
		if n, done := needs[name]; done || visiting[name] {
			return n
		}
		b := byName[name]
		if b == nil {
			return nil
		}
		visiting[name] = true
		all := slices.Clone(b.Locks)
		for _, st := range b.Steps {
			all = append(all, st.Locks...)
			if st.Kind != StepTrigger || !st.Wait {
				continue
			}
			for _, s := range st.Schedulers {
				if sched, ok := cat.schedulers[s]; ok && sched.Kind == SchedulerTriggerable {
					for _, to := range sched.Builders {
						all = append(all, visit(to)...)
					}
				}
			}
		}
		visiting[name] = false
		needs[name] = sortedSet(all)
		return needs[name]
	}
	for _, d := range builders {
		visit(d.b.Name)
	}
	return needs
}

// checkTriggerSlots refuses a waiting trigger step whose triggered builds
// could only ever run in the worker slot its own build holds: one worker
// with one slot runs the triggered builder, and the waiting builder runs
// there too. The build would wait for ever for a child that cannot start.
// (With more slots, enough waiting builds can still fill them all; that
// depends on the load, not the configuration alone, and is documented.)
func (ev *evaluator) checkTriggerSlots(cat *catalog) {
	for _, d := range ev.decl.builders {
		b := &d.b
		for _, st := range b.Steps {
			if st.Kind != StepTrigger || !st.Wait {
				continue
			}
			for _, s := range st.Schedulers {
				sched, ok := cat.schedulers[s]
				if !ok || sched.Kind != SchedulerTriggerable {
					continue
				}
				for _, to := range sched.Builders {
					t, ok := cat.builders[to]
					if !ok || len(t.b.Workers) != 1 {
						continue
					}
					w := t.b.Workers[0]
					if decl, ok := cat.workers[w]; ok && decl.w.MaxBuilds == 1 &&
						slices.Contains(b.Workers, w) {
						ev.errorf(st.Pos, kindBuilder, b.Name, "step %q waits for builder %q, which "+
							"only worker %q runs, with one build at a time: a build of %q running "+
							"there would wait for ever; give %q more workers or slots, or do not wait",
							st.Name, to, w, b.Name, to)
					}
				}
			}
		}
	}
}
