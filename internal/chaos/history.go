package chaos

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"
)

// History is everything a campaign saw: what it asked for and when, the
// faults it injected, what the processes reported, what the masters' APIs
// answered while it ran, and what the database held once the cluster had
// settled. The checker reads nothing else, so a history saved to a file
// can be checked again, and synthetic histories test the checker.
type History struct {
	Seed     int64         `json:"seed"`
	Duration time.Duration `json:"duration"`
	Started  time.Time     `json:"started"`
	// Healed is when the last fault was healed; Quiet, when no request
	// was pending or claimed and no build running (zero if that never
	// happened); Settled, when the last samples were taken after that.
	// Work submitted after Quiet (a periodic scheduler's) may still run
	// when the database is read.
	Healed  time.Time `json:"healed"`
	Quiet   time.Time `json:"quiet"`
	Settled time.Time `json:"settled"`
	// SettleTimedOut is set when work was still pending or running when
	// the settling time ran out.
	SettleTimedOut bool `json:"settle_timed_out"`

	// Bounds are the limits the checker holds the cluster to.
	Bounds Bounds `json:"bounds"`
	// LockLimits are the max_holders of each lock the markers name; 1
	// for a lock not listed.
	LockLimits map[string]int `json:"lock_limits"`

	Events   []Event      `json:"events"`
	Forces   []Force      `json:"forces"`
	Pushes   []Push       `json:"pushes"`
	Applies  []Apply      `json:"applies"`
	Faults   []FaultRun   `json:"faults"`
	Samples  []Sample     `json:"samples"`
	Lists    []List       `json:"lists"`
	Markers  []Marker     `json:"markers"`
	Services []LogLine    `json:"service_log"`
	Runs     []ProcessRun `json:"runs"`
	Final    Final        `json:"final"`
}

// ProcessRun is one process of a master or worker: from its first log line to
// its last if it ended (Ended is zero for a process that still ran when
// the history was collected).
type ProcessRun struct {
	Process string    `json:"process"`
	Started time.Time `json:"started"`
	Ended   time.Time `json:"ended"`
}

// Bounds are the time limits of DESIGN.md's invariants as the campaign
// configures them, with the generous margins tests allow.
type Bounds struct {
	// Propagation is how long after an apply every master must show the
	// new generation.
	Propagation time.Duration `json:"propagation"`
	// Failover is how long a service may lack a working owner while a
	// working master exists.
	Failover time.Duration `json:"failover"`
	// Recovery is how long after PostgreSQL is back the cluster may take
	// to find its feet again.
	Recovery time.Duration `json:"recovery"`
}

// Event is one line of the campaign's log: an action, a fault, a process
// exit, anything a reader of a failure's trace needs.
type Event struct {
	At     time.Time `json:"at"`
	Kind   string    `json:"kind"`
	Target string    `json:"target,omitempty"`
	Detail string    `json:"detail,omitempty"`
}

// Force is a forced build request that a master acknowledged.
type Force struct {
	At      time.Time `json:"at"`
	Via     string    `json:"via"`
	Builder string    `json:"builder"`
	Request int64     `json:"request"`
}

// Push is a commit pushed to the watched branch.
type Push struct {
	At       time.Time `json:"at"`
	Revision string    `json:"revision"`
}

// Apply is a configuration that was applied, and what it declares.
type Apply struct {
	// Started is when the apply began; At, when it was acknowledged.
	Started  time.Time `json:"started"`
	At       time.Time `json:"at"`
	Via      string    `json:"via"`
	Builders []string  `json:"builders"`
	Workers  []string  `json:"workers"`
	// Services are the clustered services this configuration implies.
	Services []string `json:"services"`
}

// FaultRun is a fault as it was injected: when it began, when it was
// healed (zero if never), and what it hit.
type FaultRun struct {
	Kind   FaultKind `json:"kind"`
	Target string    `json:"target"`
	// Link is, for a fault on a worker's links, the master it was cut
	// from, or "all".
	Link   string    `json:"link,omitempty"`
	Start  time.Time `json:"start"`
	End    time.Time `json:"end"`
	Detail string    `json:"detail,omitempty"`
}

// Sample is the clustered services and live masters as one master's API
// showed them at one moment.
type Sample struct {
	At       time.Time       `json:"at"`
	Via      string          `json:"via"`
	Live     []string        `json:"live"`
	Services []ServiceSample `json:"services"`
}

// ServiceSample is one clustered service in a [Sample].
type ServiceSample struct {
	Name  string `json:"name"`
	Owner string `json:"owner"`
	Token int64  `json:"token"`
}

// List is the builders and workers that one master's API listed as
// active: asked at At, answered by Answered.
type List struct {
	At       time.Time `json:"at"`
	Answered time.Time `json:"answered"`
	Master   string    `json:"master"`
	Builders []string  `json:"builders"`
	Workers  []string  `json:"workers"`
}

// Marker is one line a step wrote to its build's marker file.
type Marker struct {
	Build   int64     `json:"build"`
	Builder string    `json:"builder"`
	Number  int64     `json:"number"`
	Step    string    `json:"step"`
	Phase   string    `json:"phase"` // "start" or "end"
	At      time.Time `json:"at"`
	Lock    string    `json:"lock,omitempty"`
}

// LogLine is a line of a master's log about a clustered service: started
// or stopped with a fencing token, a durable write it made, or a write
// refused by its fence.
type LogLine struct {
	At      time.Time `json:"at"`
	Process string    `json:"process"` // the master's run, such as m2-run3
	Msg     string    `json:"msg"`
	Service string    `json:"service,omitempty"`
	Token   int64     `json:"token,omitempty"`
	// Write is set on a line recording a durable write that the
	// database accepted.
	Write bool `json:"write,omitempty"`
}

// Final is what the database held once the cluster had settled.
type Final struct {
	Generation int64      `json:"generation"`
	Builders   []string   `json:"builders"`
	Workers    []string   `json:"workers"`
	Builds     []Build    `json:"builds"`
	Requests   []Request  `json:"requests"`
	Changes    []Change   `json:"changes"`
	Buildsets  []Buildset `json:"buildsets"`
	Services   []Service  `json:"services"`
	Masters    []Master   `json:"masters"`
	LockHolds  int        `json:"lock_holds"`
	// Grants are every grant of a service's token; Fenced, every row a
	// clustered service wrote under its fence, as the database keeps them.
	Grants []Grant     `json:"grants"`
	Fenced []FencedRow `json:"fenced"`
}

// Grant is a row of the service_grants table: a service given a token,
// on the database clock.
type Grant struct {
	Service string    `json:"service"`
	Token   int64     `json:"token"`
	Master  string    `json:"master"` // "" when the grant released or retired the service
	At      time.Time `json:"at"`
}

// FencedRow is a row a clustered service wrote, with the fence it was
// written under and the database time of the write.
type FencedRow struct {
	Row     string    `json:"row"` // such as "buildset 12"
	Service string    `json:"service"`
	Token   int64     `json:"token"`
	At      time.Time `json:"at"`
}

// Build is a row of the builds table.
type Build struct {
	ID         int64     `json:"id"`
	Builder    string    `json:"builder"`
	Number     int64     `json:"number"`
	Request    int64     `json:"request"`
	State      string    `json:"state"`
	Result     string    `json:"result"`
	Reason     string    `json:"reason"`
	RetryOf    int64     `json:"retry_of"`
	Worker     string    `json:"worker"`
	Master     string    `json:"master"` // the master that handed it out
	Steps      int       `json:"steps"`
	CreatedAt  time.Time `json:"created_at"`
	FinishedAt time.Time `json:"finished_at"`
}

// Request is a row of the build_requests table.
type Request struct {
	ID       int64     `json:"id"`
	Buildset int64     `json:"buildset"`
	Builder  string    `json:"builder"`
	State    string    `json:"state"`
	Reason   string    `json:"reason"`
	Build    int64     `json:"build"`
	RetryOf  int64     `json:"retry_of"`
	Merged   int64     `json:"merged_into"`
	At       time.Time `json:"submitted_at"`
}

// Change is a row of the changes table.
type Change struct {
	ID         int64  `json:"id"`
	Repository string `json:"repository"`
	Branch     string `json:"branch"`
	Revision   string `json:"revision"`
}

// Buildset is a row of the buildsets table.
type Buildset struct {
	ID        int64     `json:"id"`
	Scheduler string    `json:"scheduler"`
	Change    int64     `json:"change"`
	Reason    string    `json:"reason"`
	CreatedAt time.Time `json:"created_at"`
}

// Service is a row of the services table with its owner's name and state.
type Service struct {
	Name       string `json:"name"`
	State      string `json:"state"`
	Owner      string `json:"owner"`
	OwnerState string `json:"owner_state"`
	Token      int64  `json:"token"`
	Retired    bool   `json:"retired"`
}

// Master is a row of the masters table.
type Master struct {
	ID    int64  `json:"id"`
	Name  string `json:"name"`
	State string `json:"state"`
}

// recorder collects a history from the campaign's goroutines.
type recorder struct {
	mu sync.Mutex
	h  History
}

func (r *recorder) event(kind, target, format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.h.Events = append(r.h.Events, Event{At: time.Now(), Kind: kind, Target: target,
		Detail: fmt.Sprintf(format, args...)})
}

// with runs f on the history under the recorder's lock.
func (r *recorder) with(f func(h *History)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(&r.h)
}

// history returns the history, its events sorted by time.
func (r *recorder) history() *History {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := r.h
	sort.SliceStable(h.Events, func(i, j int) bool { return h.Events[i].At.Before(h.Events[j].At) })
	return &h
}

// Save writes the history as JSON to path.
func (h *History) Save(path string) error {
	data, err := json.MarshalIndent(h, "", "  ")
	if err != nil {
		return fmt.Errorf("encode history: %w", err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("save history: %w", err)
	}
	return nil
}

// LoadHistory reads a history that [History.Save] wrote.
func LoadHistory(path string) (*History, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load history: %w", err)
	}
	var h History
	if err := json.Unmarshal(data, &h); err != nil {
		return nil, fmt.Errorf("load history %s: %w", path, err)
	}
	return &h, nil
}
