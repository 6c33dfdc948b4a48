// Package workerapi is the master's side of the worker protocol, and
// holds the wire types that the worker process shares with it.
//
// The protocol is plain HTTP with JSON bodies under /api/worker/v1/:
//
//	POST /api/worker/v1/sessions            Basic auth (worker name, password)
//	     -> SessionResponse; supersedes any earlier session of the worker.
//	POST /api/worker/v1/poll                Bearer session token, PollRequest
//	     -> PollResponse; a long poll that doubles as the heartbeat and
//	        carries new builds, cancellations and stop orders.
//	POST /api/worker/v1/builds/{id}/steps/{n}/start   StepStart
//	POST /api/worker/v1/builds/{id}/steps/{n}/log?offset=N&attempt=T
//	     raw bytes; -> LogAck with the stored size
//	POST /api/worker/v1/builds/{id}/steps/{n}/finish  StepFinish
//	POST /api/worker/v1/builds/{id}/steps/{n}/locks/acquire  AttemptRequest
//	     -> LockGrant; the step runs only once Acquired is set
//	POST /api/worker/v1/builds/{id}/steps/{n}/locks/release  AttemptRequest
//	POST /api/worker/v1/builds/{id}/steps/{n}/trigger  TriggerRequest
//	     -> TriggerStatus; starts a trigger step's builds, once
//	GET  /api/worker/v1/builds/{id}/steps/{n}/trigger
//	     -> TriggerStatus; polled by a trigger step that waits
//	POST /api/worker/v1/builds/{id}/finish            BuildFinish
//
// Every build write carries the attempt token handed out with the build;
// a write with a stale token is refused with 409 Conflict, so a build
// attempt that was superseded or declared lost cannot change what is
// stored. Log appends are idempotent by offset, so a worker may resend a
// chunk after a lost answer without duplicating bytes.
//
// A poll whose only news would be cancel orders the master already sent
// on this session is held like an empty one, so a worker that is still
// stopping a build is not answered again and again; each order is sent
// once, and again only after ResendCancelAfter, in case the answer that
// carried it was lost.
package workerapi

import "github.com/regent-ci/regent/internal/config"

// SessionResponse answers a successful login.
type SessionResponse struct {
	SessionID int64  `json:"session_id"`
	Token     string `json:"token"`
	// PollTimeoutSeconds is how long the master holds a poll open.
	PollTimeoutSeconds int `json:"poll_timeout_seconds"`
	// Master is the name of the master that created the session.
	Master string `json:"master"`
	// MaxBuilds is the worker's max_builds in the configuration: how many
	// builds it runs at once unless its own command line says otherwise.
	MaxBuilds int `json:"max_builds,omitempty"`
}

// PollRequest is what a worker reports on every poll.
type PollRequest struct {
	// Running lists the build ids the worker is currently executing.
	Running []int64 `json:"running"`
	// Capacity is how many more builds the worker will accept now.
	Capacity int `json:"capacity"`
	// Wait asks the master to hold the poll open until there is work or
	// the poll timeout passes. A worker that only reports sets it false.
	Wait bool `json:"wait"`
}

// PollResponse carries work and orders for a worker.
type PollResponse struct {
	Builds []Assignment `json:"builds,omitempty"`
	// Cancel lists running builds the worker must stop.
	Cancel []int64 `json:"cancel,omitempty"`
	// Stop tells the worker its session is over (superseded, revoked,
	// removed from the configuration); it should exit and say why.
	Stop   bool   `json:"stop,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// Assignment is a build handed to a worker.
type Assignment struct {
	BuildID      int64             `json:"build_id"`
	Builder      string            `json:"builder"`
	Number       int64             `json:"number"`
	AttemptToken string            `json:"attempt_token"`
	Properties   map[string]string `json:"properties"`
	Env          map[string]string `json:"env,omitempty"`
	// SecretEnv maps environment variable names of every step to the
	// names of the secrets giving their values, which the worker
	// resolves; steps carry their own in config.Step.SecretEnv.
	SecretEnv map[string]string `json:"secret_env,omitempty"`
	Steps     []config.Step     `json:"steps"`
	// CleanWorkspace asks the worker to empty the builder's directory
	// before the first step, as a retried build must start afresh.
	CleanWorkspace bool `json:"clean_workspace,omitempty"`
	// MaxStepLog is the most output bytes the master stores per step; the
	// worker keeps that much and adds one truncation marker line. Zero
	// means the worker's own limit applies.
	MaxStepLog int64 `json:"max_step_log,omitempty"`
}

// AttemptRequest is the body of a build write that carries nothing but
// the attempt token.
type AttemptRequest struct {
	AttemptToken string `json:"attempt_token"`
}

// LockGrant answers a step's request for the locks it names.
type LockGrant struct {
	// Acquired is set once the step holds all its locks.
	Acquired bool `json:"acquired"`
	// Waiting names a lock that has no room yet; the worker asks again
	// after a short pause.
	Waiting string `json:"waiting,omitempty"`
}

// StepStart reports that a step began.
type StepStart struct {
	AttemptToken string `json:"attempt_token"`
	Name         string `json:"name"`
}

// LogAck answers a log append with the number of bytes now stored for the
// step, which is where the next append must start.
type LogAck struct {
	Size int64 `json:"size"`
}

// StepFinish reports a step's end.
type StepFinish struct {
	AttemptToken string `json:"attempt_token"`
	Result       string `json:"result"`
	// Reason explains results other than success, such as a timeout.
	Reason string `json:"reason,omitempty"`
	// Properties are set on the build by the step.
	Properties map[string]string `json:"properties,omitempty"`
	// LogSize is the total number of output bytes the step produced; the
	// master refuses the finish until it holds all of them.
	LogSize int64 `json:"log_size"`
}

// BuildFinish reports a build's end.
type BuildFinish struct {
	AttemptToken string `json:"attempt_token"`
	Result       string `json:"result"`
	Reason       string `json:"reason,omitempty"`
}

// Error is the body of every non-2xx answer.
type Error struct {
	Error string `json:"error"`
}

// Headers and query parameters of the log append.
const (
	HeaderAttempt = "X-Regent-Attempt"
)
