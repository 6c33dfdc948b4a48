package config

import (
	"fmt"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
)

// Kinds of declared objects, as they appear in errors and as the Starlark
// type of the values the constructors return.
const (
	kindRepo      = "git_repo"
	kindWorker    = "worker"
	kindBuilder   = "builder"
	kindScheduler = "scheduler"
	kindLock      = "lock"
	kindStep      = "step"
	kindSecret    = "secret"
	kindParam     = "force_parameter"
)

// entity is the value a constructor of a named object returns: it stands
// for the object wherever its name is expected.
type entity struct {
	kind, name string
}

var (
	_ starlark.HasAttrs = (*entity)(nil)
	_ starlark.HasAttrs = (*stepValue)(nil)
)

func (e *entity) String() string        { return fmt.Sprintf("%s(%q)", e.kind, e.name) }
func (e *entity) Type() string          { return e.kind }
func (e *entity) Freeze()               {}
func (e *entity) Truth() starlark.Bool  { return true }
func (e *entity) Hash() (uint32, error) { return starlark.String(e.kind + "\x00" + e.name).Hash() }
func (e *entity) AttrNames() []string   { return []string{"name"} }

// Attr gives access to the object's name.
func (e *entity) Attr(name string) (starlark.Value, error) {
	if name == "name" {
		return starlark.String(e.name), nil
	}
	return nil, nil
}

// stepValue is the value step.git, step.shell and step.trigger return. A
// step belongs to no builder until a builder lists it; it may be listed by
// several.
type stepValue struct {
	step Step
	// named is true when the configuration gave the step's name.
	named bool
	// secrets are the secret() references of the step's env.
	secrets []*secretValue
}

func (s *stepValue) String() string {
	return fmt.Sprintf("step.%s(%q)", s.step.Kind, s.step.Name)
}
func (s *stepValue) Type() string          { return kindStep }
func (s *stepValue) Freeze()               {}
func (s *stepValue) Truth() starlark.Bool  { return true }
func (s *stepValue) Hash() (uint32, error) { return 0, fmt.Errorf("unhashable type: step") }
func (s *stepValue) AttrNames() []string   { return []string{"kind", "name"} }

// Attr gives access to the step's kind and name.
func (s *stepValue) Attr(name string) (starlark.Value, error) {
	switch name {
	case "kind":
		return starlark.String(s.step.Kind), nil
	case "name":
		return starlark.String(s.step.Name), nil
	}
	return nil, nil
}

// secretValue is a reference to a secret by name. It never holds the
// secret's value.
type secretValue struct {
	name string
	pos  Pos
}

func (s *secretValue) String() string        { return fmt.Sprintf("secret(%q)", s.name) }
func (s *secretValue) Type() string          { return kindSecret }
func (s *secretValue) Freeze()               {}
func (s *secretValue) Truth() starlark.Bool  { return true }
func (s *secretValue) Hash() (uint32, error) { return starlark.String("secret\x00" + s.name).Hash() }

// paramValue is a typed parameter of a force scheduler.
type paramValue struct {
	param ForceParameter
	pos   Pos
}

func (p *paramValue) String() string {
	return fmt.Sprintf("param.%s(%q)", p.param.Kind, p.param.Name)
}
func (p *paramValue) Type() string          { return kindParam }
func (p *paramValue) Freeze()               {}
func (p *paramValue) Truth() starlark.Bool  { return true }
func (p *paramValue) Hash() (uint32, error) { return 0, fmt.Errorf("unhashable type: %s", kindParam) }

// builtinFn is the Go implementation of a Starlark built-in function.
type builtinFn = func(*starlark.Thread, *starlark.Builtin, starlark.Tuple, []starlark.Tuple) (starlark.Value, error)

// builtins returns the predeclared names of a configuration.
func (ev *evaluator) builtins() starlark.StringDict {
	d := guardBuiltins()
	add := starlark.NewBuiltin
	d["git_repo"] = add("git_repo", ev.gitRepo)
	d["worker"] = add("worker", ev.worker)
	d["builder"] = add("builder", ev.builder)
	d["lock"] = add("lock", ev.lock)
	d["secret"] = add("secret", ev.secret)
	d["step"] = &starlarkstruct.Module{Name: "step", Members: starlark.StringDict{
		"git":     add("step.git", ev.stepGit),
		"shell":   add("step.shell", ev.stepShell),
		"trigger": add("step.trigger", ev.stepTrigger),
	}}
	d["scheduler"] = &starlarkstruct.Module{Name: "scheduler", Members: starlark.StringDict{
		"branch":      add("scheduler.branch", ev.schedBranch),
		"any_branch":  add("scheduler.any_branch", ev.schedAnyBranch),
		"force":       add("scheduler.force", ev.schedForce),
		"cron":        add("scheduler.cron", ev.schedCron),
		"periodic":    add("scheduler.periodic", ev.schedPeriodic),
		"triggerable": add("scheduler.triggerable", ev.schedTriggerable),
		"dependent":   add("scheduler.dependent", ev.schedDependent),
	}}
	d["param"] = &starlarkstruct.Module{Name: "param", Members: starlark.StringDict{
		"string": add("param.string", ev.paramOf(ParamString)),
		"int":    add("param.int", ev.paramOf(ParamInt)),
		"bool":   add("param.bool", ev.paramOf(ParamBool)),
		"choice": add("param.choice", ev.paramOf(ParamChoice)),
	}}
	return d
}
