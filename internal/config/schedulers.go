package config

import (
	"fmt"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // time zones must not depend on the machine evaluating

	"github.com/robfig/cron/v3"
	"go.starlark.net/starlark"
)

// schedArgs are the arguments shared by scheduler constructors; each
// constructor unpacks the ones it accepts.
type schedArgs struct {
	name, builders, masters                       starlark.Value
	repo, branch, pattern, stable, paths, authors starlark.Value
	params, cron, timezone, interval, upstream    starlark.Value
	props                                         starlark.Value
}

// schedStart unpacks a scheduler call and converts the arguments every
// kind has: name, builders, masters when pairs has it, and properties. It
// returns nil when the call was refused.
func (ev *evaluator) schedStart(th *starlark.Thread, fn *starlark.Builtin, kind string, a *schedArgs,
	args starlark.Tuple, kwargs []starlark.Tuple, pairs ...any) (*call, *Scheduler, error) {
	pairs = append(pairs, "properties?", &a.props)
	c, ok, err := ev.begin(th, fn, kindScheduler, args, kwargs, pairs...)
	if err != nil {
		return nil, nil, err
	}
	if !ok {
		c.refused()
		return c, nil, nil
	}
	s := &Scheduler{Pos: c.pos, Kind: kind, Name: c.objectName(a.name)}
	s.Builders = c.refs("builders", a.builders, kindBuilder)
	if len(s.Builders) == 0 && !c.bad {
		c.errorf("builders: name at least one builder")
	}
	s.Masters = c.strings("masters", a.masters, nil, checkName)
	s.Properties = c.properties("properties", a.props)
	ev.decl.schedulers = append(ev.decl.schedulers, s)
	return c, s, nil
}

// schedDone returns the value standing for a scheduler.
func schedDone(c *call, err error) (starlark.Value, error) {
	if err != nil {
		return nil, err
	}
	return &entity{kind: kindScheduler, name: c.name}, nil
}

// changeFilter converts the change filters of the change-driven kinds.
func (c *call) changeFilter(s *Scheduler, a *schedArgs) {
	s.Repo, _ = c.ref("repo", a.repo, kindRepo)
	s.TreeStableTimer = c.duration("tree_stable_timer", a.stable, "", 0, true)
	s.Paths = c.strings("paths", a.paths, nil, checkPathPattern)
	s.Authors = c.strings("authors", a.authors, nil, func(s string) error {
		if strings.TrimSpace(s) == "" {
			return fmt.Errorf("an author filter is empty")
		}
		return nil
	})
}

// checkPathPattern says what is wrong with a path filter, if anything.
func checkPathPattern(p string) error {
	if _, err := path.Match(p, ""); err != nil || p == "" {
		return fmt.Errorf("%q is not a valid path pattern", p)
	}
	return nil
}

// schedBranch implements scheduler.branch(name, repo, branch, builders,
// tree_stable_timer=None, paths=[], authors=[], masters=[],
// properties={}).
func (ev *evaluator) schedBranch(th *starlark.Thread, fn *starlark.Builtin,
	args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var a schedArgs
	c, s, err := ev.schedStart(th, fn, SchedulerBranch, &a, args, kwargs, "name", &a.name,
		"repo", &a.repo, "branch", &a.branch, "builders", &a.builders, "tree_stable_timer?", &a.stable,
		"paths?", &a.paths, "authors?", &a.authors, "masters?", &a.masters)
	if s != nil {
		c.changeFilter(s, &a)
		s.Branch = c.text("branch", a.branch, "", 255)
		if err := checkBranch(s.Branch); err != nil {
			c.errorf("branch: %v", err)
		}
	}
	return schedDone(c, err)
}

// schedAnyBranch implements scheduler.any_branch(name, repo, builders,
// branch_pattern=None, tree_stable_timer=None, paths=[], authors=[],
// masters=[], properties={}).
func (ev *evaluator) schedAnyBranch(th *starlark.Thread, fn *starlark.Builtin,
	args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var a schedArgs
	c, s, err := ev.schedStart(th, fn, SchedulerAnyBranch, &a, args, kwargs, "name", &a.name,
		"repo", &a.repo, "builders", &a.builders, "branch_pattern?", &a.pattern,
		"tree_stable_timer?", &a.stable, "paths?", &a.paths, "authors?", &a.authors, "masters?", &a.masters)
	if s != nil {
		c.changeFilter(s, &a)
		s.BranchPattern = c.text("branch_pattern", a.pattern, "", 1024)
		if _, err := regexp.Compile(`^(?:` + s.BranchPattern + `)$`); err != nil {
			c.errorf("branch_pattern: %q is not a valid regular expression: %v", s.BranchPattern, err)
		}
	}
	return schedDone(c, err)
}

// schedForce implements scheduler.force(name, builders, parameters=[],
// properties={}).
func (ev *evaluator) schedForce(th *starlark.Thread, fn *starlark.Builtin,
	args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var a schedArgs
	c, s, err := ev.schedStart(th, fn, SchedulerForce, &a, args, kwargs, "name", &a.name,
		"builders", &a.builders, "parameters?", &a.params)
	if s != nil {
		items, _ := c.list("parameters", a.params, false)
		seen := map[string]bool{}
		for _, x := range items {
			p, ok := x.(*paramValue)
			if !ok {
				c.errorf("parameters: want parameters made by param.string, param.int, param.bool "+
					"or param.choice, got %s", x.Type())
				continue
			}
			if seen[p.param.Name] {
				c.errorAt(p.pos, "two parameters are named %q", p.param.Name)
				continue
			}
			seen[p.param.Name] = true
			s.Parameters = append(s.Parameters, p.param)
		}
	}
	return schedDone(c, err)
}

// schedCron implements scheduler.cron(name, builders, cron, timezone="UTC",
// masters=[], properties={}).
func (ev *evaluator) schedCron(th *starlark.Thread, fn *starlark.Builtin,
	args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var a schedArgs
	c, s, err := ev.schedStart(th, fn, SchedulerCron, &a, args, kwargs, "name", &a.name,
		"builders", &a.builders, "cron", &a.cron, "timezone?", &a.timezone, "masters?", &a.masters)
	if s != nil {
		s.Cron = c.text("cron", a.cron, "", 256)
		if err := checkCron(s.Cron); err != nil {
			c.errorf("cron: %v", err)
		}
		s.Timezone = c.text("timezone", a.timezone, "UTC", 256)
		if err := checkTimezone(s.Timezone); err != nil {
			c.errorf("timezone: %v", err)
		}
	}
	return schedDone(c, err)
}

// checkCron says what is wrong with a cron expression, if anything.
func checkCron(expr string) error {
	if strings.HasPrefix(expr, "TZ=") || strings.HasPrefix(expr, "CRON_TZ=") || strings.HasPrefix(expr, "@every") {
		return fmt.Errorf("%q: use the timezone argument for time zones and scheduler.periodic for intervals", expr)
	}
	if _, err := cron.ParseStandard(expr); err != nil {
		return fmt.Errorf("%q is not a five-field cron expression "+
			"(minute hour day-of-month month day-of-week, such as \"30 2 * * 1-5\"): %w", expr, err)
	}
	return nil
}

// checkTimezone says what is wrong with a time zone name, if anything.
// "Local" is refused: it would depend on the machine.
func checkTimezone(tz string) error {
	if tz == "" || tz == "Local" {
		return fmt.Errorf("%q is not a time zone name; use an IANA name such as \"Europe/Paris\" or \"UTC\"", tz)
	}
	if _, err := time.LoadLocation(tz); err != nil {
		return fmt.Errorf("%q is not a known time zone; use an IANA name such as \"Europe/Paris\" or \"UTC\"", tz)
	}
	return nil
}

// schedPeriodic implements scheduler.periodic(name, builders, interval,
// masters=[], properties={}).
func (ev *evaluator) schedPeriodic(th *starlark.Thread, fn *starlark.Builtin,
	args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var a schedArgs
	c, s, err := ev.schedStart(th, fn, SchedulerPeriodic, &a, args, kwargs, "name", &a.name,
		"builders", &a.builders, "interval", &a.interval, "masters?", &a.masters)
	if s != nil {
		s.Interval = c.duration("interval", a.interval, "", time.Second, false)
	}
	return schedDone(c, err)
}

// schedTriggerable implements scheduler.triggerable(name, builders,
// properties={}).
func (ev *evaluator) schedTriggerable(th *starlark.Thread, fn *starlark.Builtin,
	args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var a schedArgs
	c, _, err := ev.schedStart(th, fn, SchedulerTriggerable, &a, args, kwargs, "name", &a.name,
		"builders", &a.builders)
	return schedDone(c, err)
}

// schedDependent implements scheduler.dependent(name, upstream, builders,
// properties={}).
func (ev *evaluator) schedDependent(th *starlark.Thread, fn *starlark.Builtin,
	args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var a schedArgs
	c, s, err := ev.schedStart(th, fn, SchedulerDependent, &a, args, kwargs, "name", &a.name,
		"upstream", &a.upstream, "builders", &a.builders)
	if s != nil {
		s.Upstream = c.refs("upstream", a.upstream, kindBuilder)
		if len(s.Upstream) == 0 && !c.bad {
			c.errorf("upstream: name at least one builder to wait for")
		}
	}
	return schedDone(c, err)
}

// paramOf returns the constructor of force parameters of one kind:
// param.string(name, default="", label="", required=False),
// param.int(name, default=0, ...), param.bool(name, default=False, ...)
// and param.choice(name, choices, default=choices[0], ...).
func (ev *evaluator) paramOf(kind string) builtinFn {
	return func(th *starlark.Thread, fn *starlark.Builtin,
		args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var name, choices, def, label, required starlark.Value
		pairs := []any{"name", &name}
		if kind == ParamChoice {
			pairs = append(pairs, "choices", &choices)
		}
		pairs = append(pairs, "default?", &def, "label?", &label, "required?", &required)
		c, ok, err := ev.begin(th, fn, kindParam, args, kwargs, pairs...)
		if err != nil {
			return nil, err
		}
		p := &paramValue{param: ForceParameter{Kind: kind, Name: c.name}, pos: c.pos}
		if !ok {
			return p, nil
		}
		p.param.Name = c.objectName(name)
		p.param.Label = c.text("label", label, "", 200)
		p.param.Required = c.boolean("required", required, false)
		p.param.Choices = c.strings("choices", choices, nil, nil)
		p.param.Default = c.paramDefault(kind, def, p.param.Choices)
		return p, nil
	}
}

// paramDefault converts a parameter's default into its canonical text.
func (c *call) paramDefault(kind string, v starlark.Value, choices []string) string {
	switch kind {
	case ParamInt:
		return strconv.Itoa(c.integer("default", v, 0, -1<<53, 1<<53))
	case ParamBool:
		return strconv.FormatBool(c.boolean("default", v, false))
	case ParamChoice:
		if len(choices) == 0 {
			c.errorf("choices: list at least one choice")
			return ""
		}
		def := c.text("default", v, choices[0], maxTextBytes)
		if !slices.Contains(choices, def) {
			c.errorf("default: %q is not one of the choices", def)
		}
		return def
	}
	return c.text("default", v, "", maxTextBytes)
}
