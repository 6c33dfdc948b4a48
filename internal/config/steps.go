package config

import (
	"fmt"
	"path"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"go.starlark.net/starlark"
)

// defaultStepTimeout is a step's total time when the configuration does
// not say.
const defaultStepTimeout = "20m"

// stepGit implements step.git(repo, name=None, workdir="", timeout="20m",
// halt_on_failure=True).
func (ev *evaluator) stepGit(th *starlark.Thread, fn *starlark.Builtin,
	args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var repo, name, workdir, timeout, halt starlark.Value
	c, ok, err := ev.begin(th, fn, kindStep, args, kwargs, "repo", &repo, "name?", &name,
		"workdir?", &workdir, "timeout?", &timeout, "halt_on_failure?", &halt)
	if err != nil {
		return nil, err
	}
	s := &stepValue{step: Step{Kind: StepGit, Name: "git", Pos: c.pos, HaltOnFailure: true}}
	if !ok {
		return s, nil
	}
	c.stepName(s, name)
	s.step.Repo, _ = c.ref("repo", repo, kindRepo)
	c.common(s, workdir, timeout, halt)
	return s, nil
}

// stepShell implements step.shell(command, name=None, timeout="20m",
// no_output_timeout=None, env={}, workdir="", halt_on_failure=True,
// locks=[], set_property=None).
func (ev *evaluator) stepShell(th *starlark.Thread, fn *starlark.Builtin,
	args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var command, name, timeout, silence, env, workdir, halt, locks, setProp starlark.Value
	c, ok, err := ev.begin(th, fn, kindStep, args, kwargs, "command", &command, "name?", &name,
		"timeout?", &timeout, "no_output_timeout?", &silence, "env?", &env, "workdir?", &workdir,
		"halt_on_failure?", &halt, "locks?", &locks, "set_property?", &setProp)
	if err != nil {
		return nil, err
	}
	s := &stepValue{step: Step{Kind: StepShell, Name: "shell", Pos: c.pos, HaltOnFailure: true}}
	if !ok {
		return s, nil
	}
	c.name = ""
	s.step.Command = c.text("command", command, "", maxCommandBytes)
	if strings.TrimSpace(s.step.Command) == "" && !c.bad {
		c.errorf("command: the command is empty")
	}
	s.step.Name = commandName(s.step.Command)
	c.stepName(s, name)
	c.common(s, workdir, timeout, halt)
	s.step.NoOutputTimeout = c.duration("no_output_timeout", silence, "", time.Second, true)
	s.step.Env, s.step.SecretEnv, s.secrets = c.env("env", env)
	s.step.Locks = c.refs("locks", locks, kindLock)
	if s.step.SetProperty = c.text("set_property", setProp, "", 200); s.step.SetProperty != "" {
		if err := checkName(s.step.SetProperty); err != nil {
			c.errorf("set_property: %v", err)
		}
	}
	return s, nil
}

// stepTrigger implements step.trigger(schedulers, wait=False, name=None,
// halt_on_failure=True).
func (ev *evaluator) stepTrigger(th *starlark.Thread, fn *starlark.Builtin,
	args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var scheds, wait, name, halt starlark.Value
	c, ok, err := ev.begin(th, fn, kindStep, args, kwargs, "schedulers", &scheds, "wait?", &wait,
		"name?", &name, "halt_on_failure?", &halt)
	if err != nil {
		return nil, err
	}
	s := &stepValue{step: Step{Kind: StepTrigger, Name: "trigger", Pos: c.pos, HaltOnFailure: true}}
	if !ok {
		return s, nil
	}
	c.stepName(s, name)
	s.step.Schedulers = c.refs("schedulers", scheds, kindScheduler)
	if len(s.step.Schedulers) == 0 && !c.bad {
		c.errorf("schedulers: name at least one triggerable scheduler")
	}
	s.step.Wait = c.boolean("wait", wait, false)
	s.step.HaltOnFailure = c.boolean("halt_on_failure", halt, true)
	return s, nil
}

// stepName sets the step's name when the configuration gives one.
func (c *call) stepName(s *stepValue, v starlark.Value) {
	c.name = s.step.Name
	if !given(v) {
		return
	}
	name := c.text("name", v, "", 200)
	if err := checkStepName(name); err != nil {
		c.errorf("name: %v", err)
		return
	}
	s.step.Name, s.named, c.name = name, true, name
}

// checkStepName says what is wrong with a step name, if anything.
func checkStepName(s string) error {
	if strings.TrimSpace(s) != s || s == "" || utf8.RuneCountInString(s) > 100 ||
		strings.ContainsFunc(s, unicode.IsControl) {
		return fmt.Errorf("%q is not a valid step name: use 1 to 100 printable characters, "+
			"without leading or trailing spaces", s)
	}
	return nil
}

// common converts the fields shared by git and shell steps.
func (c *call) common(s *stepValue, workdir, timeout, halt starlark.Value) {
	s.step.Workdir = c.text("workdir", workdir, "", 1024)
	if err := checkWorkdir(s.step.Workdir); err != nil {
		c.errorf("workdir: %v", err)
	}
	s.step.Timeout = c.duration("timeout", timeout, defaultStepTimeout, time.Second, false)
	s.step.HaltOnFailure = c.boolean("halt_on_failure", halt, true)
}

// checkWorkdir says what is wrong with a step's working directory, which
// must stay inside the build directory.
func checkWorkdir(dir string) error {
	if dir == "" {
		return nil
	}
	clean := path.Clean(dir)
	if path.IsAbs(dir) || strings.Contains(dir, `\`) || clean == ".." || strings.HasPrefix(clean, "../") {
		return fmt.Errorf("%q leaves the build directory; use a relative path inside it", dir)
	}
	return nil
}

// nameSteps gives each step of a builder its final name: a name given by
// the configuration must be unique in the builder; a name derived from a
// command gets a number when it is already taken ("make", "make 2").
func (c *call) nameSteps(steps []*stepValue) []Step {
	out := make([]Step, len(steps))
	taken := map[string]bool{}
	for i, s := range steps {
		out[i] = s.step
		if !s.named {
			continue
		}
		if taken[s.step.Name] {
			c.errorAt(s.step.Pos, "two steps are named %q; a step name must be unique in its builder", s.step.Name)
		}
		taken[s.step.Name] = true
	}
	next := map[string]int{} // derived name -> next number to try
	for i, s := range steps {
		if s.named {
			continue
		}
		name := s.step.Name
		for n := max(next[name], 2); taken[name]; n++ {
			name = fmt.Sprintf("%s %d", s.step.Name, n)
			next[s.step.Name] = n + 1
		}
		taken[name] = true
		out[i].Name = name
	}
	return out
}

// errorAt records a problem of the call's object found at another place.
func (c *call) errorAt(pos Pos, format string, args ...any) {
	c.bad = true
	c.ev.errorf(pos, c.kind, c.name, format, args...)
}

var (
	// commandSep splits a command line into its simple commands.
	commandSep = regexp.MustCompile(`&&|\|\||[;|&]`)
	// subcommandRE matches a second word worth keeping in a step name,
	// such as "build" in "go build ./...".
	subcommandRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_:-]*$`)
	// assignmentRE matches an environment assignment before a command.
	assignmentRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)
)

// commandName derives a readable step name from a shell command: the
// program and its subcommand, skipping environment assignments and
// leading "cd DIR" or "set -e" commands. "go build ./..." gives
// "go build", "cd web && npm ci" gives "npm ci".
func commandName(cmd string) string {
	for _, line := range strings.Split(cmd, "\n") {
		for _, part := range commandSep.Split(line, -1) {
			words := strings.Fields(part)
			for len(words) > 0 && assignmentRE.MatchString(words[0]) {
				words = words[1:]
			}
			if len(words) == 0 || strings.HasPrefix(words[0], "#") {
				continue
			}
			first := strings.Trim(words[0], `"'(){}`)
			if first == "" || first == "cd" || first == "set" {
				continue
			}
			name := path.Base(first)
			if len(words) > 1 && subcommandRE.MatchString(words[1]) {
				name += " " + words[1]
			}
			if checkStepName(name) != nil {
				return "shell"
			}
			return truncate(name, 50)
		}
	}
	return "shell"
}

// truncate shortens s to at most n runes.
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return strings.TrimSpace(string([]rune(s)[:n]))
}
