package config

import (
	"fmt"
	"slices"
	"strings"
)

// index maps the names of one kind of object to their declarations,
// reporting every name declared twice.
func index[T any](ev *evaluator, kind string, items []T, key func(T) (string, Pos)) map[string]T {
	m := make(map[string]T, len(items))
	for _, it := range items {
		name, pos := key(it)
		if name == "" {
			continue // an invalid name, already reported
		}
		if first, ok := m[name]; ok {
			_, at := key(first)
			ev.errorf(pos, kind, name, "declared twice; the first declaration is at %s", at)
			continue
		}
		m[name] = it
	}
	return m
}

// catalog is the declared objects by name.
type catalog struct {
	repos      map[string]*Repo
	workers    map[string]*workerDecl
	builders   map[string]*builderDecl
	schedulers map[string]*Scheduler
	locks      map[string]*Lock
	byTag      map[string][]string // worker tag -> worker names, sorted
	names      map[string][]string // kind -> names, sorted
	selected   int                 // workers selected by tags, in all builders
}

// validate checks the declarations against each other: duplicates,
// references, worker tags, renames, cycles among triggers and the order
// of locks. It resolves worker tags into names and fills the URL of git
// steps.
func (ev *evaluator) validate() {
	d := &ev.decl
	cat := catalog{
		repos:      index(ev, kindRepo, d.repos, func(r *Repo) (string, Pos) { return r.Name, r.Pos }),
		workers:    index(ev, kindWorker, d.workers, func(w *workerDecl) (string, Pos) { return w.w.Name, w.w.Pos }),
		builders:   index(ev, kindBuilder, d.builders, func(b *builderDecl) (string, Pos) { return b.b.Name, b.b.Pos }),
		schedulers: index(ev, kindScheduler, d.schedulers, func(s *Scheduler) (string, Pos) { return s.Name, s.Pos }),
		locks:      index(ev, kindLock, d.locks, func(l *Lock) (string, Pos) { return l.Name, l.Pos }),
		byTag:      map[string][]string{},
	}
	cat.names = map[string][]string{
		kindRepo: keys(cat.repos), kindWorker: keys(cat.workers), kindBuilder: keys(cat.builders),
		kindScheduler: keys(cat.schedulers), kindLock: keys(cat.locks),
	}
	for _, w := range d.workers {
		for _, t := range w.w.Tags {
			cat.byTag[t] = append(cat.byTag[t], w.w.Name)
		}
	}
	for _, b := range d.builders {
		ev.checkBuilder(&cat, b)
	}
	ev.checkRenames(&cat)
	for _, s := range d.schedulers {
		ev.checkScheduler(&cat, s)
	}
	ev.checkCycles(&cat)
	ev.checkLockOrder(&cat)
	ev.checkTriggerSlots(&cat)
}

// ref checks that a reference from the object kind/name at pos names a
// declared object of refKind, saying so when it does not. Its message
// starts with prefix.
func (ev *evaluator) ref(cat *catalog, pos Pos, kind, name, prefix, refKind, ref string) bool {
	names := cat.names[refKind]
	if _, ok := slices.BinarySearch(names, ref); ok {
		return true
	}
	if ref == "" {
		return false // a reference already refused when converted
	}
	if !ev.decl.broken[brokenKey(refKind, ref)] {
		msg := fmt.Sprintf("%sunknown %s %q", prefix, refKind, ref)
		if len(ev.errs) < maxErrors {
			if s := suggest(ref, names); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
		}
		ev.errorf(pos, kind, name, "%s", msg)
	}
	return false
}

// checkBuilder resolves and checks the references of one builder and of
// its steps.
func (ev *evaluator) checkBuilder(cat *catalog, d *builderDecl) {
	b := &d.b
	var workers []string
	for _, w := range d.workers {
		if tag, ok := strings.CutPrefix(w, tagPrefix); ok {
			selected := cat.byTag[tag]
			if len(selected) == 0 {
				ev.errorf(b.Pos, kindBuilder, b.Name, "workers: no worker has the tag %q", tag)
			}
			if cat.selected += len(selected); cat.selected > maxStateItems {
				ev.errorf(b.Pos, kindBuilder, b.Name, "workers: worker tags select more than %d "+
					"workers in all the builders", maxStateItems)
				continue
			}
			workers = append(workers, selected...)
			continue
		}
		if ev.ref(cat, b.Pos, kindBuilder, b.Name, "workers: ", kindWorker, w) {
			workers = append(workers, w)
		}
	}
	b.Workers = sortedSet(workers)
	for _, l := range b.Locks {
		ev.ref(cat, b.Pos, kindBuilder, b.Name, "locks: ", kindLock, l)
	}
	for i := range b.Steps {
		st := &b.Steps[i]
		prefix := fmt.Sprintf("step %q: ", st.Name)
		for _, l := range st.Locks {
			ev.ref(cat, st.Pos, kindBuilder, b.Name, prefix, kindLock, l)
		}
		if st.Kind == StepGit && ev.ref(cat, st.Pos, kindBuilder, b.Name, prefix, kindRepo, st.Repo) {
			st.RepoURL = cat.repos[st.Repo].URL
		}
		for _, s := range st.Schedulers {
			if !ev.ref(cat, st.Pos, kindBuilder, b.Name, prefix, kindScheduler, s) {
				continue
			}
			if k := cat.schedulers[s].Kind; k != SchedulerTriggerable {
				ev.errorf(st.Pos, kindBuilder, b.Name, "%sscheduler %q is a %s scheduler; "+
					"only schedulers made by scheduler.triggerable can be triggered", prefix, s, k)
			}
		}
	}
}

// checkRenames checks that previous names are free: not the name of a
// live builder and claimed by one builder only.
func (ev *evaluator) checkRenames(cat *catalog) {
	claimed := map[string]*builderDecl{}
	for _, d := range ev.decl.builders {
		b := &d.b
		for _, prev := range b.PreviousNames {
			if prev == b.Name {
				ev.errorf(b.Pos, kindBuilder, b.Name, "previous_names: lists the builder's own name")
			} else if live, ok := cat.builders[prev]; ok {
				ev.errorf(b.Pos, kindBuilder, b.Name, "previous_names: %q is the name of the builder "+
					"declared at %s; only a name no longer in use can be taken over", prev, live.b.Pos)
			} else if other, ok := claimed[prev]; ok && other != d {
				ev.errorf(b.Pos, kindBuilder, b.Name, "previous_names: %q is already claimed by "+
					"builder %q; a history can move to one builder only", prev, other.b.Name)
			}
			claimed[prev] = d
		}
	}
}

// checkScheduler checks the references of one scheduler.
func (ev *evaluator) checkScheduler(cat *catalog, s *Scheduler) {
	for _, b := range s.Builders {
		ev.ref(cat, s.Pos, kindScheduler, s.Name, "builders: ", kindBuilder, b)
	}
	for _, b := range s.Upstream {
		ev.ref(cat, s.Pos, kindScheduler, s.Name, "upstream: ", kindBuilder, b)
	}
	if s.Repo == "" || !ev.ref(cat, s.Pos, kindScheduler, s.Name, "repo: ", kindRepo, s.Repo) {
		return
	}
	repo := cat.repos[s.Repo]
	watched := len(repo.Branches) == 0 || slices.Contains(repo.Branches, s.Branch)
	if s.Kind == SchedulerBranch && s.Branch != "" && !watched {
		ev.errorf(s.Pos, kindScheduler, s.Name, "branch: git_repo %q does not watch branch %q "+
			"(it watches %s); add the branch to its branches", s.Repo, s.Branch, strings.Join(repo.Branches, ", "))
	}
}

// secretUses lists the secret() references the master itself must
// resolve: worker passwords and repository secrets (webhook secrets,
// credentials). Secrets in builder and step env are left out: they are
// resolved on the worker when the step runs, so the master never needs
// their values.
func (ev *evaluator) secretUses() []secretUse {
	var out []secretUse
	for _, d := range ev.decl.workers {
		if d.secret != nil {
			out = append(out, secretUse{Name: d.secret.name, Pos: d.secret.pos, Worker: d.w.Name})
		}
	}
	for _, ref := range ev.decl.secrets {
		out = append(out, secretUse{Name: ref.name, Pos: ref.pos})
	}
	return out
}

// keys returns the names of a catalog map, sorted.
func keys[T any](m map[string]T) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// sortedSet returns s sorted without repeats, nil when empty.
func sortedSet(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	out := slices.Clone(s)
	slices.Sort(out)
	return slices.Compact(out)
}

// suggest returns the name closest to name among names when it is close
// enough to be a likely typo.
func suggest(name string, names []string) string {
	if len(names) > 10_000 {
		return ""
	}
	best, bestDist := "", 3
	for _, n := range names {
		if d := distance(name, n); d < bestDist {
			best, bestDist = n, d
		}
	}
	return best
}

// distance is the Levenshtein distance between a and b, for short names.
func distance(a, b string) int {
	if len(a) > 100 || len(b) > 100 {
		return 100
	}
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
