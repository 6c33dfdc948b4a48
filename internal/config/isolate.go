package config

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Isolation. Load evaluates a configuration in a child process, the running
// executable started again in evaluator mode, because some Starlark
// built-ins cannot be interrupted: hashing a tuple that shares its parts
// (t = (t, t), sixty times over) or comparing such values takes longer
// than the universe has, in one call. A goroutine running such a call
// could only be abandoned, burning a processor for good; a process is
// killed. The child also stops itself when its heap outgrows the budget,
// so a memory bomb takes down only the child.
//
// The child reads the configuration and evaluates it; the parent resolves
// secrets, which never reach the child.

// evaluatorEnv, set to "1", starts a process in evaluator mode.
const evaluatorEnv = "REGENT_CONFIG_EVALUATOR"

// Exit statuses of an evaluator stopped by its hard limits.
const (
	exitHeap = 3
	exitTime = 4
)

func init() {
	// Every program linking this package can serve as the evaluator of
	// its own configurations; this runs before its main or its tests.
	if os.Getenv(evaluatorEnv) == "1" {
		os.Exit(evaluatorMain(os.Stdin, os.Stdout))
	}
}

// evalRequest is what the parent asks of the evaluator.
type evalRequest struct {
	Root         string        `json:"root"`
	MaxSteps     uint64        `json:"max_steps"`
	Timeout      time.Duration `json:"timeout"`
	MaxHeapBytes uint64        `json:"max_heap_bytes"`
	Print        bool          `json:"print"`
}

// evalReply is the evaluator's answer.
type evalReply struct {
	Outcome outcome `json:"outcome"`
	// Failure is set when the evaluation could not run at all, such as
	// an unreadable root or a bug; Internal tells a bug.
	Failure  string `json:"failure,omitempty"`
	Internal bool   `json:"internal,omitempty"`
}

// evaluatorMain serves one request in evaluator mode and returns the
// process's exit status.
func evaluatorMain(in io.Reader, out io.Writer) int {
	var req evalRequest
	if err := json.NewDecoder(io.LimitReader(in, 1<<20)).Decode(&req); err != nil {
		fmt.Fprintf(os.Stderr, "config evaluator: read request: %v\n", err)
		return 2
	}
	var once sync.Once
	reply := func(r evalReply) {
		once.Do(func() { _ = json.NewEncoder(out).Encode(r) })
	}
	go hardLimits(req, reply)

	root, err := os.OpenRoot(req.Root)
	if err != nil {
		reply(evalReply{Failure: fmt.Sprintf("open configuration root: %v", err)})
		return 0
	}
	opts := Options{MaxSteps: req.MaxSteps, Timeout: req.Timeout, MaxHeapBytes: req.MaxHeapBytes}
	if req.Print {
		opts.Print = func(Pos, string) {}
	}
	o, err := newEvaluator(root.FS(), opts.withDefaults()).supervise(context.Background())
	if err != nil {
		reply(evalReply{Failure: err.Error(), Internal: errors.Is(err, errInternal)})
		return 0
	}
	if o.State != nil {
		for _, w := range o.State.Workers {
			if w.Password != "" {
				if o.Passwords == nil {
					o.Passwords = map[string]string{}
				}
				o.Passwords[w.Name] = w.Password
			}
		}
	}
	reply(evalReply{Outcome: o})
	return 0
}

// hardLimits ends the evaluator when the evaluation outgrows its limits in
// a built-in that the evaluation's own guards cannot interrupt. It answers
// first, so that the parent can say what happened.
func hardLimits(req evalRequest, reply func(evalReply)) {
	start, began := heapBytes(), time.Now()
	stop := func(status int, reason string) {
		reply(evalReply{Outcome: outcome{Errors: Errors{{Pos: Pos{File: EntryFile},
			Msg: "evaluation stopped: " + reason}}}})
		os.Exit(status)
	}
	for range time.Tick(5 * time.Millisecond) {
		if now := heapBytes(); now > start && now-start > 2*req.MaxHeapBytes {
			stop(exitHeap, fmt.Sprintf("the evaluation holds more than %s of memory; "+
				"look for a value that grows without bound", size(int64(req.MaxHeapBytes))))
		}
		if time.Since(began) > req.Timeout+time.Second {
			stop(exitTime, fmt.Sprintf("the evaluation took longer than %v", req.Timeout))
		}
	}
}

// loadIsolated evaluates the configuration at root in an evaluator
// process, then resolves its secrets here.
func loadIsolated(ctx context.Context, root string, opts Options) (*State, error) {
	abs, err := filepath.Abs(root)
	if err == nil {
		_, err = os.Stat(abs)
	}
	if err != nil {
		return nil, fmt.Errorf("open configuration root: %w", err)
	}
	req, err := json.Marshal(evalRequest{Root: abs, MaxSteps: opts.MaxSteps, Timeout: opts.Timeout,
		MaxHeapBytes: opts.MaxHeapBytes, Print: opts.Print != nil})
	if err != nil {
		return nil, fmt.Errorf("evaluate configuration: %w", err)
	}
	// The evaluator stops itself a second after the timeout; this is the
	// last resort.
	runCtx, cancel := context.WithTimeout(ctx, opts.Timeout+5*time.Second)
	defer cancel()
	cmd := exec.CommandContext(runCtx, evaluatorPath())
	// The evaluator needs no environment, and must not see secrets that
	// EnvSecrets reads.
	cmd.Env = []string{evaluatorEnv + "=1", "GOTRACEBACK=single"}
	cmd.Stdin = bytes.NewReader(req)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &capped{max: maxReplyBytes, buf: &stdout}
	cmd.Stderr = &capped{max: 4096, buf: &stderr}
	runErr := cmd.Run()
	if ctx.Err() != nil {
		return nil, fmt.Errorf("evaluate configuration: %w", ctx.Err())
	}
	var reply evalReply
	if err := json.Unmarshal(stdout.Bytes(), &reply); err != nil {
		return nil, evaluatorDied(runErr, runCtx.Err(), stderr.String())
	}
	switch {
	case reply.Internal:
		return nil, fmt.Errorf("evaluate configuration: %w: %s", errInternal, reply.Failure)
	case reply.Failure != "":
		return nil, errors.New(reply.Failure)
	}
	if opts.Print != nil {
		for _, p := range reply.Outcome.Prints {
			opts.Print(p.Pos, p.Msg)
		}
	}
	if st := reply.Outcome.State; st != nil {
		for i := range st.Workers {
			st.Workers[i].Password = reply.Outcome.Passwords[st.Workers[i].Name]
		}
	}
	return reply.Outcome.finish(opts.Secrets)
}

// evaluatorDied explains an evaluator that ended without answering: killed
// at the last-resort deadline, or crashed, typically out of memory or of
// stack on a hostile configuration.
func evaluatorDied(runErr, deadline error, stderr string) error {
	if deadline != nil {
		return Errors{{Pos: Pos{File: EntryFile}, Msg: "evaluation stopped: the evaluator did not answer in time"}}
	}
	if runErr == nil {
		runErr = errors.New("no answer")
	}
	line, _, _ := strings.Cut(strings.TrimSpace(stderr), "\n")
	if strings.HasPrefix(line, "fatal error:") || strings.HasPrefix(line, "runtime:") {
		return Errors{{Pos: Pos{File: EntryFile}, Msg: "evaluation stopped: the evaluator died: " + line}}
	}
	return fmt.Errorf("evaluate configuration: the evaluator process failed (%w): %s", runErr, line)
}

// evaluatorPath is the executable to start as the evaluator: the running
// one, even if its file was replaced since it started.
func evaluatorPath() string {
	if _, err := os.Stat("/proc/self/exe"); err == nil {
		return "/proc/self/exe"
	}
	if p, err := os.Executable(); err == nil {
		return p
	}
	return os.Args[0]
}

// maxReplyBytes bounds the answer of an evaluator, far above the largest
// state the limits on a configuration allow.
const maxReplyBytes = 512 << 20

// capped keeps the first max bytes written to it and drops the rest.
type capped struct {
	max int
	buf *bytes.Buffer
}

func (t *capped) Write(p []byte) (int, error) {
	if room := t.max - t.buf.Len(); room > 0 {
		t.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}
