package config

import (
	"maps"
	"slices"
	"strings"
)

// state assembles the desired state from checked declarations. Every
// slice is sorted by name and every set-like list sorted, so that equal
// configurations give equal states whatever the order they were written
// in; steps and previous names keep their order, which has a meaning.
func (ev *evaluator) state() *State {
	d := &ev.decl
	st := &State{}
	for _, r := range d.repos {
		r := *r
		r.Branches = sortedSet(r.Branches)
		r.Tags = sortedSet(r.Tags)
		r.Masters = sortedSet(r.Masters)
		st.Repos = append(st.Repos, r)
	}
	for _, w := range d.workers {
		w := w.w
		w.Tags = sortedSet(w.Tags)
		st.Workers = append(st.Workers, w)
	}
	for _, b := range d.builders {
		st.Builders = append(st.Builders, builderState(b.b))
	}
	for _, s := range d.schedulers {
		s := *s
		s.Builders = sortedSet(s.Builders)
		s.Upstream = sortedSet(s.Upstream)
		s.Masters = sortedSet(s.Masters)
		s.Paths = sortedSet(s.Paths)
		s.Authors = sortedSet(s.Authors)
		st.Schedulers = append(st.Schedulers, s)
	}
	for _, l := range d.locks {
		st.Locks = append(st.Locks, *l)
	}
	sortByName(st.Repos, func(r Repo) string { return r.Name })
	sortByName(st.Workers, func(w Worker) string { return w.Name })
	sortByName(st.Builders, func(b Builder) string { return b.Name })
	sortByName(st.Schedulers, func(s Scheduler) string { return s.Name })
	sortByName(st.Locks, func(l Lock) string { return l.Name })
	return st
}

// builderState copies a builder, its steps and their maps, so that no two
// builders of a state share memory through a step they both list.
func builderState(b Builder) Builder {
	b.Tags = sortedSet(b.Tags)
	b.Locks = sortedSet(b.Locks)
	b.Env = maps.Clone(b.Env)
	b.SecretEnv = maps.Clone(b.SecretEnv)
	b.Properties = maps.Clone(b.Properties)
	b.Steps = slices.Clone(b.Steps)
	for i := range b.Steps {
		s := &b.Steps[i]
		s.Env = maps.Clone(s.Env)
		s.SecretEnv = maps.Clone(s.SecretEnv)
		s.Locks = sortedSet(s.Locks)
		s.Schedulers = sortedSet(s.Schedulers)
	}
	return b
}

// sortByName sorts objects by their name.
func sortByName[T any](s []T, name func(T) string) {
	slices.SortStableFunc(s, func(a, b T) int { return strings.Compare(name(a), name(b)) })
}
