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

// String formats the position as file:line:col.
func (p Pos) String() string {
	if p.File == "" {
		return "-"
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
	Name         string   `json:"name"`
	URL          string   `json:"url"`
	Branches     []string `json:"branches"`
	PollInterval Duration `json:"poll_interval"`
	// Masters pins the poller to masters carrying all of these tags.
	Masters []string `json:"masters,omitempty"`
	Pos     Pos      `json:"pos"`
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
	Pos       Pos      `json:"pos"`
}

// Step kinds.
const (
	StepGit   = "git"
	StepShell = "shell"
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
	Pos             Pos               `json:"pos"`
}

// Scheduler kinds.
const (
	SchedulerBranch = "branch"
	SchedulerForce  = "force"
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
	Pos             Pos      `json:"pos"`
}

// Lock limits how many builds hold it at once.
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

// Repo returns the repository with the given name, if any.
func (s *State) Repo(name string) (Repo, bool) {
	for _, r := range s.Repos {
		if r.Name == name {
			return r, true
		}
	}
	return Repo{}, false
}
