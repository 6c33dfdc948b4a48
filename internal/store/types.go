package store

import (
	"encoding/json"
	"time"
)

// Generation is one applied configuration.
type Generation struct {
	Number      int64           `json:"number"`
	ContentHash string          `json:"content_hash"`
	Source      string          `json:"source"`
	AppliedBy   string          `json:"applied_by"`
	AppliedAt   time.Time       `json:"applied_at"`
	State       json.RawMessage `json:"state,omitempty"`
}

// Builder is a builder as stored: its current definition and history.
type Builder struct {
	ID                int64           `json:"id"`
	Name              string          `json:"name"`
	Description       string          `json:"description"`
	Tags              []string        `json:"tags"`
	Spec              json.RawMessage `json:"-"`
	CreatedGeneration int64           `json:"created_generation"`
	RetiredGeneration *int64          `json:"retired_generation"`
}

// Worker is a configured worker with its live session, if any.
type Worker struct {
	ID                int64      `json:"id"`
	Name              string     `json:"name"`
	MaxBuilds         int        `json:"max_builds"`
	Tags              []string   `json:"tags"`
	State             string     `json:"state"`
	Master            string     `json:"master"`
	LastSeen          *time.Time `json:"last_seen"`
	RunningBuilds     int        `json:"running_builds"`
	RetiredGeneration *int64     `json:"retired_generation"`
}

// Worker states as shown to users.
const (
	WorkerIdle    = "idle"    // a live session, running nothing
	WorkerBusy    = "busy"    // a live session running builds
	WorkerLost    = "lost"    // the last session stopped answering
	WorkerOffline = "offline" // no session, or the last one ended cleanly
)

// Session states.
const (
	SessionActive     = "active"
	SessionSuperseded = "superseded"
	SessionRevoked    = "revoked"
	SessionLost       = "lost"
	SessionClosed     = "closed"
)

// Change is one commit seen on one branch of a repository.
type Change struct {
	ID         int64     `json:"id"`
	Repository string    `json:"repository"`
	Branch     string    `json:"branch"`
	Revision   string    `json:"revision"`
	Author     string    `json:"author"`
	Comments   string    `json:"comments"`
	Files      []string  `json:"files"`
	When       time.Time `json:"when"`
	CreatedAt  time.Time `json:"created_at"`
	// Category says what the change is: "" for a commit on a branch,
	// "tag" for a tag, "pull_request" for a pull or merge request's head.
	Category string `json:"category"`
	// Properties are what the source knew beside the commit, such as a
	// pull request's number and base branch; builds get them.
	Properties map[string]string `json:"properties,omitempty"`
}

// Change categories.
const (
	CategoryTag         = "tag"
	CategoryPullRequest = "pull_request"
)

// Buildset is a group of build requests created together.
type Buildset struct {
	ID         int64             `json:"id"`
	Reason     string            `json:"reason"`
	Scheduler  string            `json:"scheduler"`
	ChangeID   *int64            `json:"change"`
	Properties map[string]string `json:"properties"`
	Generation int64             `json:"generation"`
	CreatedAt  time.Time         `json:"created_at"`
	Requests   []BuildRequest    `json:"requests,omitempty"`
}

// Build request states.
const (
	RequestPending   = "pending"
	RequestClaimed   = "claimed"
	RequestComplete  = "complete"
	RequestCancelled = "cancelled"
)

// BuildRequest asks for one build of one builder.
type BuildRequest struct {
	ID          int64      `json:"id"`
	BuildsetID  int64      `json:"buildset"`
	Builder     string     `json:"builder"`
	State       string     `json:"state"`
	Reason      string     `json:"reason"`
	SubmittedAt time.Time  `json:"submitted_at"`
	ClaimedAt   *time.Time `json:"claimed_at"`
	CompletedAt *time.Time `json:"completed_at"`
	Build       *int64     `json:"build"`
	// MergedInto is the newer request a collapsed request was merged
	// into, and CoveredBy the build that ran it, once there is one.
	MergedInto *int64 `json:"merged_into,omitempty"`
	CoveredBy  *int64 `json:"covered_by,omitempty"`
}

// Build is one attempt at running a build request.
type Build struct {
	ID         int64             `json:"id"`
	Builder    string            `json:"builder"`
	Number     int64             `json:"number"`
	RequestID  int64             `json:"request"`
	BuildsetID int64             `json:"buildset"`
	State      string            `json:"state"`
	Result     *string           `json:"result"`
	Reason     string            `json:"reason"`
	Properties map[string]string `json:"properties"`
	RetryOf    *int64            `json:"retry_of"`   // the lost build this one retries
	RetriedBy  *int64            `json:"retried_by"` // the build retrying this lost one, once started
	Worker     *string           `json:"worker"`
	Master     string            `json:"master,omitempty"`
	CreatedAt  time.Time         `json:"created_at"`
	StartedAt  *time.Time        `json:"started_at"`
	FinishedAt *time.Time        `json:"finished_at"`
}

// Step is one step of a build as stored.
type Step struct {
	BuildID    int64      `json:"build"`
	Number     int        `json:"number"`
	Name       string     `json:"name"`
	State      string     `json:"state"`
	Result     *string    `json:"result"`
	Reason     string     `json:"reason"`
	LogSize    int64      `json:"log_size"`
	StartedAt  *time.Time `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at"`
}
