package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// Plan is what applying a new desired state over an old one changes, per
// kind of object, like a terraform plan.
type Plan struct {
	Repos      KindPlan
	Workers    KindPlan
	Locks      KindPlan
	Builders   KindPlan
	Schedulers KindPlan
}

// KindPlan is the plan for one kind of object. Every list is sorted by
// name.
type KindPlan struct {
	// Added are objects of the new state only.
	Added []string
	// Removed are objects of the old state only, to be retired.
	Removed []string
	// Renamed are objects that take over an old name's history, from a
	// builder's previous_names.
	Renamed []Rename
	// Changed are objects of both states whose content differs.
	Changed []Change
}

// Rename is an object that keeps its history under a new name.
type Rename struct {
	From, To string
	// Fields are the fields that change as well, as in Change.
	Fields []string
	// Retired is set when From is not in the old state but was retired
	// before it: the new object brings its history back.
	Retired bool
}

// Change is an object whose content differs between the states.
type Change struct {
	Name string
	// Fields are the JSON names of the fields that differ, such as
	// "steps" or "max_builds"; "password" when a worker's password
	// changes.
	Fields []string
}

// DiffOptions tunes Diff with what only the store knows.
type DiffOptions struct {
	// PasswordChanged reports whether the password of a worker present
	// in both states changed. A state read back from the store has no
	// passwords, so only the store can tell; without this function
	// passwords are compared only when both states hold them.
	PasswordChanged func(worker string) bool
	// Revived maps a builder of the new state to the retired builder
	// whose history it takes over, one of its previous_names that the old
	// state does not have.
	Revived map[string]string
}

// Diff returns what applying new over old changes. A nil state is empty.
func Diff(old, new *State) Plan { return DiffWith(old, new, DiffOptions{}) }

// DiffWith is Diff with options.
func DiffWith(old, new *State, opts DiffOptions) Plan {
	if old == nil {
		old = &State{}
	}
	if new == nil {
		new = &State{}
	}
	old, new = withoutPositions(old), withoutPositions(new)
	var p Plan
	p.Repos = diffKind(old.Repos, new.Repos, kindRules[Repo]{name: func(r Repo) string { return r.Name }})
	p.Locks = diffKind(old.Locks, new.Locks, kindRules[Lock]{name: func(l Lock) string { return l.Name }})
	p.Schedulers = diffKind(old.Schedulers, new.Schedulers,
		kindRules[Scheduler]{name: func(s Scheduler) string { return s.Name }})
	p.Builders = diffKind(old.Builders, new.Builders, kindRules[Builder]{
		name:     func(b Builder) string { return b.Name },
		previous: func(b Builder) []string { return b.PreviousNames },
		revived:  opts.Revived,
	})
	p.Workers = diffKind(old.Workers, new.Workers, kindRules[Worker]{
		name: func(w Worker) string { return w.Name },
		password: func(o, n Worker) bool {
			if opts.PasswordChanged != nil {
				return opts.PasswordChanged(n.Name)
			}
			return o.Password != "" && n.Password != "" && o.Password != n.Password
		},
	})
	return p
}

// kindRules say how diffKind tells the objects of one kind apart.
type kindRules[T any] struct {
	name func(T) string
	// previous, when set, gives an object's previous names.
	previous func(T) []string
	// revived maps an object to the retired name whose history it takes
	// over.
	revived map[string]string
	// password, when set, says whether an object's password changed.
	password func(o, n T) bool
}

// diffKind compares the objects of one kind.
func diffKind[T any](old, new []T, k kindRules[T]) KindPlan {
	var p KindPlan
	oldBy := map[string]T{}
	for _, o := range old {
		oldBy[k.name(o)] = o
	}
	newBy := map[string]bool{}
	for _, n := range new {
		newBy[k.name(n)] = true
	}
	taken := map[string]bool{} // old names whose history moves to a new object
	for _, n := range new {
		name := k.name(n)
		o, ok := oldBy[name]
		if ok {
			if fields := changedFields(o, n, k.password); len(fields) > 0 {
				p.Changed = append(p.Changed, Change{Name: name, Fields: fields})
			}
			continue
		}
		if from, ok := renamedFrom(n, k.previous, oldBy, newBy, taken); ok {
			taken[from] = true
			fields := changedFields(oldBy[from], n, k.password)
			fields = slices.DeleteFunc(fields, func(f string) bool { return f == "previous_names" })
			if len(fields) == 0 {
				fields = nil
			}
			p.Renamed = append(p.Renamed, Rename{From: from, To: name, Fields: fields})
			continue
		}
		if from, ok := k.revived[name]; ok && !newBy[from] {
			if _, active := oldBy[from]; !active {
				p.Renamed = append(p.Renamed, Rename{From: from, To: name, Retired: true})
				continue
			}
		}
		p.Added = append(p.Added, name)
	}
	for _, o := range old {
		if !newBy[k.name(o)] && !taken[k.name(o)] {
			p.Removed = append(p.Removed, k.name(o))
		}
	}
	slices.Sort(p.Added)
	slices.Sort(p.Removed)
	slices.SortFunc(p.Renamed, func(a, b Rename) int { return strings.Compare(a.To, b.To) })
	slices.SortFunc(p.Changed, func(a, b Change) int { return strings.Compare(a.Name, b.Name) })
	return p
}

// renamedFrom finds the old name whose history a new object takes over:
// the first of its previous names that the old state has, the new state
// does not, and no other object took first.
func renamedFrom[T any](n T, previous func(T) []string, oldBy map[string]T,
	newBy, taken map[string]bool) (string, bool) {
	if previous == nil {
		return "", false
	}
	for _, prev := range previous(n) {
		if _, ok := oldBy[prev]; ok && !newBy[prev] && !taken[prev] {
			return prev, true
		}
	}
	return "", false
}

// changedFields lists the JSON names of the fields of two objects that
// differ, ignoring the name and comparing empty values as equal.
func changedFields[T any](o, n T, password func(o, n T) bool) []string {
	var fields []string
	if password != nil && password(o, n) {
		fields = append(fields, "password")
	}
	// Most objects and fields are unchanged, and then their plain
	// encodings are already equal; the canonical one, slower, irons out
	// empty values written differently.
	if plain(o) == plain(n) {
		return fields
	}
	ov, nv := reflect.ValueOf(o), reflect.ValueOf(n)
	t := ov.Type()
	for i := range t.NumField() {
		tag, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if tag == "-" || tag == "name" || tag == "pos" || tag == "" {
			continue
		}
		of, nf := ov.Field(i).Interface(), nv.Field(i).Interface()
		if plain(of) != plain(nf) && !bytes.Equal(canonicalJSON(of), canonicalJSON(nf)) {
			fields = append(fields, tag)
		}
	}
	return fields
}

// plain is the JSON encoding of v.
func plain(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// Empty reports whether the plan changes nothing.
func (p Plan) Empty() bool {
	for _, k := range p.kinds() {
		if len(k.plan.Added)+len(k.plan.Removed)+len(k.plan.Renamed)+len(k.plan.Changed) > 0 {
			return false
		}
	}
	return true
}

// kindPlan names the plan of one kind.
type kindPlan struct {
	kind string
	plan KindPlan
}

func (p Plan) kinds() []kindPlan {
	return []kindPlan{
		{kindRepo, p.Repos}, {kindWorker, p.Workers}, {kindLock, p.Locks},
		{kindBuilder, p.Builders}, {kindScheduler, p.Schedulers},
	}
}

// String renders the plan one object per line, marked "+" when added,
// "~" when changed (with the fields), ">" when renamed (from a name that
// was retired before, "(retired)") and "-" when removed, then a summary
// such as "Plan: 1 to add, 2 to change, 1 to rename, 1 to remove.".
func (p Plan) String() string {
	if p.Empty() {
		return "No changes.\n"
	}
	var b strings.Builder
	var add, change, rename, remove int
	for _, k := range p.kinds() {
		for _, n := range k.plan.Added {
			fmt.Fprintf(&b, "+ %s %s\n", k.kind, n)
		}
		for _, c := range k.plan.Changed {
			fmt.Fprintf(&b, "~ %s %s: %s\n", k.kind, c.Name, strings.Join(c.Fields, ", "))
		}
		for _, r := range k.plan.Renamed {
			retired := ""
			if r.Retired {
				retired = " (retired)"
			}
			fmt.Fprintf(&b, "> %s %s%s -> %s", k.kind, r.From, retired, r.To)
			if len(r.Fields) > 0 {
				fmt.Fprintf(&b, ": %s", strings.Join(r.Fields, ", "))
			}
			b.WriteString("\n")
		}
		for _, n := range k.plan.Removed {
			fmt.Fprintf(&b, "- %s %s\n", k.kind, n)
		}
		add += len(k.plan.Added)
		change += len(k.plan.Changed)
		rename += len(k.plan.Renamed)
		remove += len(k.plan.Removed)
	}
	fmt.Fprintf(&b, "Plan: %d to add, %d to change, %d to rename, %d to remove.\n", add, change, rename, remove)
	return b.String()
}
