package config

import (
	"fmt"
	"time"
)

// Pos is a position in a configuration file, used to point users at the
// source of an error.
type Pos struct {
	File string `json:"file"`
	Line int    `json:"line"`
	Col  int    `json:"col"`
}

// String formats the position as file:line:col, or just the file when the
// line is unknown.
func (p Pos) String() string {
	if p.File == "" {
		return "-"
	}
	if p.Line == 0 {
		return p.File
	}
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col)
}

// State is the desired state a configuration evaluates to. It is what a
// generation stores and what every master acts on. Slices are sorted by
// name so that equal configurations produce equal states.
type State struct {
	Repos      []Repo      `json:"repos"`
	Workers    []Worker    `json:"workers"`
	Builders   []Builder   `json:"builders"`
	Schedulers []Scheduler `json:"schedulers"`
	Locks      []Lock      `json:"locks"`
}

// Repo is a git repository watched by a poller.
type Repo struct {
	Name     string   `json:"name"`
	URL      string   `json:"url"`
	Branches []string `json:"branches"`
	// PollInterval is how often the repository is polled. Zero means it
	// is not polled: its changes arrive only through webhooks.
	PollInterval Duration `json:"poll_interval"`
	// Masters pins the poller to masters carrying all of these tags.
	Masters []string `json:"masters,omitempty"`
	// Tags are the tags watched (exact names or path.Match patterns);
	// each new or moved tag makes a change whose branch is refs/tags/NAME.
	// None watches no tag.
	Tags []string `json:"tags,omitempty"`
	// WebhookSecret names the secret that signs webhook deliveries for
	// this repository. The state holds only the name: the master resolves
	// the value with its secret provider when a delivery arrives. Without
	// it, webhook deliveries for the repository are refused.
	WebhookSecret string `json:"webhook_secret,omitempty"`
	// Credentials names the secret holding "USER:PASSWORD" (or a token
	// alone) that the poller presents to an HTTP(S) repository. The value
	// is resolved when the poller runs and never stored or logged.
	Credentials string `json:"credentials,omitempty"`
	Pos         Pos    `json:"pos"`
}

// Worker is a build worker that may connect to the cluster.
type Worker struct {
	Name string `json:"name"`
	// Password is the resolved plaintext. It is never serialised: the
	// store keeps a salted hash and the content hash a keyed digest.
	Password  string   `json:"-"`
	MaxBuilds int      `json:"max_builds"`
	Tags      []string `json:"tags,omitempty"`
	Pos       Pos      `json:"pos"`
}

// Builder is a named sequence of steps run on one of its workers.
type Builder struct {
	Name          string            `json:"name"`
	Workers       []string          `json:"workers"`
	Steps         []Step            `json:"steps"`
	Env           map[string]string `json:"env,omitempty"`
	Properties    map[string]string `json:"properties,omitempty"`
	Tags          []string          `json:"tags,omitempty"`
	Description   string            `json:"description,omitempty"`
	PreviousNames []string          `json:"previous_names,omitempty"`
	// RetryLost says whether a build lost with its worker is retried as a
	// new attempt instead of ending with an exception.
	RetryLost bool     `json:"retry_lost,omitempty"`
	Locks     []string `json:"locks,omitempty"`
	// CollapseRequests merges the builder's pending build requests for a
	// branch into the newest one: the older ones are cancelled with a
	// reason naming the request that covers them.
	CollapseRequests bool `json:"collapse_requests,omitempty"`
	// SecretEnv maps environment variable names to the names of the
	// secrets that provide their values, for every step of the builder.
	// Values are resolved where the step runs, never stored.
	SecretEnv map[string]string `json:"secret_env,omitempty"`
	Pos       Pos               `json:"pos"`
}

// Step kinds.
const (
	StepGit     = "git"
	StepShell   = "shell"
	StepTrigger = "trigger"
)

// Step is one unit of work in a build.
type Step struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
	// Repo names the repository a git step checks out.
	Repo string `json:"repo,omitempty"`
	// RepoURL is filled from the repository when the state is built so
	// that workers need nothing but the step.
	RepoURL string `json:"repo_url,omitempty"`
	// Command is run by /bin/sh -c for shell steps.
	Command         string            `json:"command,omitempty"`
	Timeout         Duration          `json:"timeout,omitempty"`
	NoOutputTimeout Duration          `json:"no_output_timeout,omitempty"`
	Env             map[string]string `json:"env,omitempty"`
	Workdir         string            `json:"workdir,omitempty"`
	HaltOnFailure   bool              `json:"halt_on_failure"`
	// SecretEnv maps environment variable names to the names of the
	// secrets that provide their values. Values are resolved where the
	// step runs and masked in its log; the state holds only the names.
	SecretEnv map[string]string `json:"secret_env,omitempty"`
	// Locks are acquired before the step runs and released after it.
	Locks []string `json:"locks,omitempty"`
	// Schedulers are the triggerable schedulers a trigger step starts.
	Schedulers []string `json:"schedulers,omitempty"`
	// Wait makes a trigger step wait for the builds it started and take
	// the worst of their results.
	Wait bool `json:"wait,omitempty"`
	// SetProperty, on a shell step, names the build property that the
	// step's standard output, trimmed of surrounding white space, sets
	// when the step succeeds.
	SetProperty string `json:"set_property,omitempty"`
	Pos         Pos    `json:"pos"`
}

// Scheduler kinds.
const (
	// SchedulerBranch builds changes on one branch of a repository.
	SchedulerBranch = "branch"
	// SchedulerAnyBranch builds changes on any watched branch, optionally
	// those whose name matches BranchPattern.
	SchedulerAnyBranch = "any_branch"
	// SchedulerForce builds on request, with typed parameters.
	SchedulerForce = "force"
	// SchedulerCron builds at the times of a cron expression.
	SchedulerCron = "cron"
	// SchedulerPeriodic builds every Interval.
	SchedulerPeriodic = "periodic"
	// SchedulerTriggerable builds when a trigger step names it.
	SchedulerTriggerable = "triggerable"
	// SchedulerDependent builds when builds of all Upstream builders for
	// the same buildset succeed.
	SchedulerDependent = "dependent"
)

// Scheduler turns changes or requests into buildsets.
type Scheduler struct {
	Name     string   `json:"name"`
	Kind     string   `json:"kind"`
	Repo     string   `json:"repo,omitempty"`
	Branch   string   `json:"branch,omitempty"`
	Builders []string `json:"builders"`
	// TreeStableTimer, when set, waits for the branch to be quiet that
	// long before starting builds for the newest change.
	TreeStableTimer Duration `json:"tree_stable_timer,omitempty"`
	Masters         []string `json:"masters,omitempty"`

	// BranchPattern is a regular expression (RE2 syntax, matched against
	// the whole branch name) selecting branches for an any-branch
	// scheduler; empty selects every watched branch.
	BranchPattern string `json:"branch_pattern,omitempty"`
	// Paths, when set, keeps only changes touching a file that matches
	// one of these patterns (path.Match syntax; "dir/" matches a prefix).
	Paths []string `json:"paths,omitempty"`
	// Authors, when set, keeps only changes whose author contains one of
	// these strings (for example an e-mail address).
	Authors []string `json:"authors,omitempty"`

	// Parameters are the typed parameters a force scheduler accepts.
	Parameters []ForceParameter `json:"parameters,omitempty"`
	// Cron is the five-field cron expression of a cron scheduler,
	// evaluated in Timezone.
	Cron     string `json:"cron,omitempty"`
	Timezone string `json:"timezone,omitempty"`
	// Interval is the period of a periodic scheduler.
	Interval Duration `json:"interval,omitempty"`
	// Upstream names the builders a dependent scheduler waits for.
	Upstream []string `json:"upstream,omitempty"`
	// Properties are given to every build the scheduler starts.
	Properties map[string]string `json:"properties,omitempty"`

	Pos Pos `json:"pos"`
}

// Force parameter kinds.
const (
	ParamString = "string"
	ParamInt    = "int"
	ParamBool   = "bool"
	ParamChoice = "choice"
)

// ForceParameter is one typed parameter of a force scheduler, shown on the
// force form and checked when a build is forced. A forced build gets each
// parameter as a property of the same name.
type ForceParameter struct {
	Name string `json:"name"`
	Kind string `json:"kind"`
	// Label is the text shown on the force form; the name when empty.
	Label string `json:"label,omitempty"`
	// Default is the value used when none is given, written canonically:
	// "42" for an int, "true" or "false" for a bool.
	Default string `json:"default"`
	// Choices are the allowed values of a choice parameter.
	Choices []string `json:"choices,omitempty"`
	// Required refuses a forced build that does not give the parameter.
	Required bool `json:"required,omitempty"`
}

// Lock limits how many builds or steps hold it at once, across the whole
// cluster. MaxHolders 1 makes it exclusive; more makes it counting.
type Lock struct {
	Name       string `json:"name"`
	MaxHolders int    `json:"max_holders"`
	Pos        Pos    `json:"pos"`
}

// Duration is a time.Duration that serialises in Go syntax ("90s").
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalText renders the duration in Go syntax.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText parses a duration in Go syntax.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Builder returns the builder with the given name, if any.
func (s *State) Builder(name string) (Builder, bool) {
	for _, b := range s.Builders {
		if b.Name == name {
			return b, true
		}
	}
	return Builder{}, false
}

// Worker returns the worker with the given name, if any.
func (s *State) Worker(name string) (Worker, bool) {
	for _, w := range s.Workers {
		if w.Name == name {
			return w, true
		}
	}
	return Worker{}, false
}

// Scheduler returns the scheduler with the given name, if any.
func (s *State) Scheduler(name string) (Scheduler, bool) {
	for _, sc := range s.Schedulers {
		if sc.Name == name {
			return sc, true
		}
	}
	return Scheduler{}, false
}

// Lock returns the lock with the given name, if any.
func (s *State) Lock(name string) (Lock, bool) {
	for _, l := range s.Locks {
		if l.Name == name {
			return l, true
		}
	}
	return Lock{}, false
}

// Repo returns the repository with the given name, if any.
func (s *State) Repo(name string) (Repo, bool) {
	for _, r := range s.Repos {
		if r.Name == name {
			return r, true
		}
	}
	return Repo{}, false
}
