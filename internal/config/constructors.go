package config

import (
	"fmt"
	"path"
	"strings"
	"time"

	"go.starlark.net/starlark"
)

// declarations are the objects a configuration declared, in the order of
// their constructor calls, before they are checked against each other.
type declarations struct {
	repos      []*Repo
	workers    []*workerDecl
	builders   []*builderDecl
	schedulers []*Scheduler
	locks      []*Lock
	// secrets are the secret() references of repositories, checked like
	// those of steps.
	secrets []*secretValue
	// broken holds "kind\x00name" of objects whose constructor call was
	// refused outright: references to them are not reported again.
	broken map[string]bool
}

// workerDecl is a declared worker and, when its password is a secret, the
// reference to resolve.
type workerDecl struct {
	w      Worker
	secret *secretValue
}

// builderDecl is a declared builder with its references as written:
// worker names and "tag:NAME" selectors, steps, and secret references.
type builderDecl struct {
	b       Builder
	workers []string
	steps   []*stepValue
	secrets []*secretValue
}

// brokenKey is the key of an object in declarations.broken.
func brokenKey(kind, name string) string { return kind + "\x00" + name }

// refused records a constructor call whose arguments could not even be
// unpacked, and returns a stand-in value for it.
func (c *call) refused() (starlark.Value, error) {
	if c.ev.decl.broken == nil {
		c.ev.decl.broken = map[string]bool{}
	}
	c.ev.decl.broken[brokenKey(c.kind, c.name)] = true
	return &entity{kind: c.kind, name: c.name}, nil
}

// gitRepo implements git_repo(name, url, branches=["main"],
// poll_interval="1m", masters=[], tags=[], webhook_secret=None,
// credentials=None).
func (ev *evaluator) gitRepo(th *starlark.Thread, fn *starlark.Builtin,
	args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var name, url, branches, poll, masters, tags, hookSecret, creds starlark.Value
	c, ok, err := ev.begin(th, fn, kindRepo, args, kwargs, "name", &name, "url", &url,
		"branches?", &branches, "poll_interval?", &poll, "masters?", &masters, "tags?", &tags,
		"webhook_secret?", &hookSecret, "credentials?", &creds)
	if err != nil || !ok {
		return c.refusedOr(err)
	}
	r := &Repo{Pos: c.pos, Name: c.objectName(name)}
	r.URL = c.text("url", url, "", maxTextBytes)
	if _, ok := url.(starlark.String); ok {
		if err := checkURL(r.URL); err != nil {
			c.errorf("url: %v", err)
		}
	}
	r.Branches = c.strings("branches", branches, []string{"main"}, checkBranch)
	r.Tags = c.strings("tags", tags, nil, checkTagPattern)
	if given(branches) && starlark.Len(branches) == 0 && len(r.Tags) == 0 {
		c.errorf("branches: list at least one branch or tag to watch")
	}
	r.PollInterval = c.duration("poll_interval", poll, "1m", time.Second, true)
	r.Masters = c.strings("masters", masters, nil, checkName)
	r.WebhookSecret = c.secretName("webhook_secret", hookSecret)
	r.Credentials = c.secretName("credentials", creds)
	ev.decl.repos = append(ev.decl.repos, r)
	return &entity{kind: kindRepo, name: r.Name}, nil
}

// refusedOr returns err when evaluation must stop, or the stand-in of a
// refused call.
func (c *call) refusedOr(err error) (starlark.Value, error) {
	if err != nil {
		return nil, err
	}
	return c.refused()
}

// checkURL says what is wrong with a repository URL, if anything.
func checkURL(u string) error {
	switch {
	case u == "":
		return fmt.Errorf("the URL is empty")
	case strings.HasPrefix(u, "-"):
		return fmt.Errorf("%q starts with '-', which git would read as an option", u)
	case strings.ContainsFunc(u, func(r rune) bool { return r < ' ' || r == 0x7f }):
		return fmt.Errorf("%q holds control characters", u)
	case strings.TrimSpace(u) != u:
		return fmt.Errorf("%q starts or ends with a space", u)
	}
	return nil
}

// secretName converts an optional argument that must be a secret()
// reference, recording it to be checked, and returns the secret's name.
func (c *call) secretName(field string, v starlark.Value) string {
	if !given(v) {
		return ""
	}
	s, ok := v.(*secretValue)
	if !ok {
		c.errorf(`%s: want secret("name"), got %s; a value written in the configuration `+
			`would be stored with it`, field, v.Type())
		return ""
	}
	c.ev.decl.secrets = append(c.ev.decl.secrets, s)
	return s.name
}

// checkTagPattern says what is wrong with a git tag name or pattern, if
// anything.
func checkTagPattern(p string) error {
	if _, err := path.Match(p, ""); err != nil || p == "" || len(p) > 255 || strings.HasPrefix(p, "-") ||
		strings.ContainsFunc(p, func(r rune) bool { return r <= ' ' || r == 0x7f || r == ':' }) {
		return fmt.Errorf("%q is not a valid tag name or pattern", p)
	}
	return nil
}

// checkBranch says what is wrong with a branch name, if anything.
func checkBranch(b string) error {
	switch {
	case b == "" || len(b) > 255:
		return fmt.Errorf("%q is not a valid branch name", b)
	case strings.HasPrefix(b, "-") || strings.Contains(b, "..") || strings.ContainsFunc(b, badRefRune):
		return fmt.Errorf("%q is not a valid branch name", b)
	}
	return nil
}

// badRefRune reports whether git forbids r in a ref name.
func badRefRune(r rune) bool {
	return r <= ' ' || r == 0x7f || strings.ContainsRune(`~^:?*[\`, r)
}

// worker implements worker(name, password, max_builds=1, tags=[]).
func (ev *evaluator) worker(th *starlark.Thread, fn *starlark.Builtin,
	args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var name, password, maxBuilds, tags starlark.Value
	c, ok, err := ev.begin(th, fn, kindWorker, args, kwargs, "name", &name, "password", &password,
		"max_builds?", &maxBuilds, "tags?", &tags)
	if err != nil || !ok {
		return c.refusedOr(err)
	}
	d := &workerDecl{w: Worker{Pos: c.pos, Name: c.objectName(name)}}
	switch p := password.(type) {
	case *secretValue:
		d.secret = p
	case starlark.String:
		d.w.Password = c.text("password", p, "", 1024)
		if d.w.Password == "" && !c.bad {
			c.errorf("password: the password is empty")
		}
	default:
		c.typeError("password", `a string or secret("name")`, password)
	}
	d.w.MaxBuilds = c.integer("max_builds", maxBuilds, 1, 1, 10_000)
	d.w.Tags = c.strings("tags", tags, nil, checkName)
	ev.decl.workers = append(ev.decl.workers, d)
	return &entity{kind: kindWorker, name: d.w.Name}, nil
}

// tagPrefix introduces a worker selector by tag in a builder's workers.
const tagPrefix = "tag:"

// builder implements builder(name, workers, steps, env={}, properties={},
// tags=[], description="", previous_names=[], retry_lost=False, locks=[],
// collapse_requests=False).
func (ev *evaluator) builder(th *starlark.Thread, fn *starlark.Builtin,
	args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var name, workers, steps, env, props, tags, desc, prev, retry, locks, collapse starlark.Value
	c, ok, err := ev.begin(th, fn, kindBuilder, args, kwargs, "name", &name, "workers", &workers,
		"steps", &steps, "env?", &env, "properties?", &props, "tags?", &tags,
		"description?", &desc, "previous_names?", &prev, "retry_lost?", &retry, "locks?", &locks,
		"collapse_requests?", &collapse)
	if err != nil || !ok {
		return c.refusedOr(err)
	}
	d := &builderDecl{b: Builder{Pos: c.pos, Name: c.objectName(name)}}
	d.workers = c.workerRefs(workers)
	d.steps = c.steps(steps)
	if len(d.steps) > maxBuilderSteps {
		c.errorf("steps: %d steps; a builder may have at most %d", len(d.steps), maxBuilderSteps)
		d.steps = d.steps[:maxBuilderSteps]
	}
	if ev.steps += len(d.steps); ev.steps > maxTotalSteps {
		return nil, fmt.Errorf("the builders hold more than %d steps in all; "+
			"look for a loop that does not end", maxTotalSteps)
	}
	d.b.Env, d.b.SecretEnv, d.secrets = c.env("env", env)
	d.b.Properties = c.properties("properties", props)
	d.b.Tags = c.strings("tags", tags, nil, checkName)
	d.b.Description = c.text("description", desc, "", maxTextBytes)
	d.b.PreviousNames = c.strings("previous_names", prev, nil, checkName)
	d.b.RetryLost = c.boolean("retry_lost", retry, false)
	d.b.Locks = c.refs("locks", locks, kindLock)
	d.b.CollapseRequests = c.boolean("collapse_requests", collapse, false)
	d.b.Steps = c.nameSteps(d.steps)
	ev.decl.builders = append(ev.decl.builders, d)
	return &entity{kind: kindBuilder, name: d.b.Name}, nil
}

// workerRefs converts a builder's workers: worker values, names, or
// "tag:NAME" selectors.
func (c *call) workerRefs(v starlark.Value) []string {
	items, ok := c.list("workers", v, true)
	if !ok {
		return nil
	}
	var out []string
	for _, x := range items {
		if s, ok := x.(starlark.String); ok && strings.HasPrefix(string(s), tagPrefix) {
			if err := checkName(string(s)[len(tagPrefix):]); err != nil {
				c.errorf("workers: %q: the tag %v", string(s), err)
				continue
			}
			out = append(out, string(s))
			continue
		}
		if name, ok := c.ref("workers", x, kindWorker); ok {
			out = append(out, name)
		}
	}
	if len(items) == 0 {
		c.errorf("workers: the builder has no workers; list workers, their names or \"tag:NAME\"")
	}
	return out
}

// steps converts a builder's steps.
func (c *call) steps(v starlark.Value) []*stepValue {
	items, ok := c.list("steps", v, false)
	if !ok {
		return nil
	}
	out := make([]*stepValue, 0, len(items))
	for _, x := range items {
		s, ok := x.(*stepValue)
		if !ok {
			c.errorf("steps: want steps made by step.git, step.shell or step.trigger, got %s", x.Type())
			continue
		}
		out = append(out, s)
	}
	if len(items) == 0 {
		c.errorf("steps: the builder has no steps")
	}
	return out
}

// lock implements lock(name, max_holders=1).
func (ev *evaluator) lock(th *starlark.Thread, fn *starlark.Builtin,
	args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var name, holders starlark.Value
	c, ok, err := ev.begin(th, fn, kindLock, args, kwargs, "name", &name, "max_holders?", &holders)
	if err != nil || !ok {
		return c.refusedOr(err)
	}
	l := &Lock{Pos: c.pos, Name: c.objectName(name)}
	l.MaxHolders = c.integer("max_holders", holders, 1, 1, 1_000_000)
	ev.decl.locks = append(ev.decl.locks, l)
	return &entity{kind: kindLock, name: l.Name}, nil
}

// secret implements secret(name): a reference resolved by the secret
// provider, never evaluated by the configuration itself.
func (ev *evaluator) secret(th *starlark.Thread, fn *starlark.Builtin,
	args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var name starlark.Value
	c, ok, err := ev.begin(th, fn, kindSecret, args, kwargs, "name", &name)
	if err != nil {
		return nil, err
	}
	if !ok {
		return &secretValue{name: c.name, pos: c.pos}, nil
	}
	return &secretValue{name: c.objectName(name), pos: c.pos}, nil
}
