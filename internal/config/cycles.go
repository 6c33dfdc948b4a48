package config

import (
	"fmt"
	"slices"
	"strings"
)

// edge is one way a build of a builder starts builds of another: a
// trigger step, or a dependent scheduler waiting for it.
type edge struct {
	to  string
	via string // what makes the edge, for messages
	pos Pos
	// builder is, in the graph of locks, the builder whose build makes
	// the edge; errors are reported on it.
	builder string
}

// checkCycles reports every set of builders whose builds would start
// each other without end, through trigger steps and dependent
// schedulers, once per set.
func (ev *evaluator) checkCycles(cat *catalog) {
	graph := map[string][]edge{}
	links := 0
	for _, d := range ev.decl.builders {
		for _, st := range d.b.Steps {
			for _, s := range st.Schedulers {
				if sched, ok := cat.schedulers[s]; ok && sched.Kind == SchedulerTriggerable {
					if links += len(sched.Builders); links > maxStateItems {
						ev.errorf(st.Pos, kindBuilder, d.b.Name, "triggers start builders more than %d times "+
							"in all; the configuration is too large to check for cycles", maxStateItems)
						return
					}
					for _, to := range sched.Builders {
						graph[d.b.Name] = append(graph[d.b.Name], edge{to: to, pos: st.Pos,
							via: fmt.Sprintf("step %q triggers %q", st.Name, s)})
					}
				}
			}
		}
	}
	for _, s := range ev.decl.schedulers {
		if s.Kind != SchedulerDependent {
			continue
		}
		for _, from := range s.Upstream {
			if links += len(s.Builders); links > maxStateItems {
				ev.errorf(s.Pos, kindScheduler, s.Name, "dependent schedulers link builders more than %d "+
					"times in all; the configuration is too large to check for cycles", maxStateItems)
				return
			}
			for _, to := range s.Builders {
				graph[from] = append(graph[from], edge{to: to, pos: s.Pos,
					via: fmt.Sprintf("dependent scheduler %q", s.Name)})
			}
		}
	}
	for _, component := range cycles(graph) {
		path := cyclePath(graph, component)
		if len(path) == 0 {
			continue
		}
		var b strings.Builder
		b.WriteString(path[0].from)
		for _, e := range path {
			fmt.Fprintf(&b, " -> %s (%s)", e.to, e.via)
		}
		ev.errorf(path[0].pos, kindBuilder, path[0].from,
			"builds would start each other without end: %s", b.String())
	}
}

// step is an edge with its origin.
type step struct {
	edge
	from string
}

// cycles returns the strongly connected components of graph that hold a
// cycle, each sorted, in order of their first name (Tarjan's algorithm).
func cycles(graph map[string][]edge) [][]string {
	nodes := make([]string, 0, len(graph))
	for n := range graph {
		nodes = append(nodes, n)
	}
	slices.Sort(nodes)
	var (
		next    int
		order   = map[string]int{}
		low     = map[string]int{}
		onStack = map[string]bool{}
		stack   []string
		out     [][]string
	)
	var visit func(n string)
	visit = func(n string) {
		order[n], low[n] = next, next
		next++
		stack = append(stack, n)
		onStack[n] = true
		for _, e := range graph[n] {
			if _, seen := order[e.to]; !seen {
				visit(e.to)
				low[n] = min(low[n], low[e.to])
			} else if onStack[e.to] {
				low[n] = min(low[n], order[e.to])
			}
		}
		if low[n] != order[n] {
			return
		}
		var comp []string
		for {
			top := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			onStack[top] = false
			comp = append(comp, top)
			if top == n {
				break
			}
		}
		selfLoop := slices.ContainsFunc(graph[n], func(e edge) bool { return e.to == n })
		if len(comp) > 1 || selfLoop {
			slices.Sort(comp)
			out = append(out, comp)
		}
	}
	for _, n := range nodes {
		if _, seen := order[n]; !seen {
			visit(n)
		}
	}
	slices.SortFunc(out, func(a, b []string) int { return strings.Compare(a[0], b[0]) })
	return out
}

// cyclePath finds a shortest cycle through the first builder of a
// component, staying inside it.
func cyclePath(graph map[string][]edge, component []string) []step {
	start := component[0]
	inside := make(map[string]bool, len(component))
	for _, n := range component {
		inside[n] = true
	}
	prev := map[string]step{}
	queue := []string{start}
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		for _, e := range graph[n] {
			if !inside[e.to] {
				continue
			}
			if e.to == start {
				path := []step{{edge: e, from: n}}
				for at := n; at != start; at = prev[at].from {
					path = append(path, prev[at])
				}
				slices.Reverse(path)
				return path
			}
			if _, seen := prev[e.to]; !seen {
				prev[e.to] = step{edge: e, from: n}
				queue = append(queue, e.to)
			}
		}
	}
	return nil // unreachable: every component holds a cycle through start
}
