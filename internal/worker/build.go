package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/regent-ci/regent/internal/build"
	"github.com/regent-ci/regent/internal/config"
	"github.com/regent-ci/regent/internal/workerapi"
)

// Causes for stopping a build; the executor and the reporter branch on them.
var (
	// errCancelled: the master asked for the build to be cancelled.
	errCancelled = errors.New("build cancelled by the master")
	// errWorkerStopping: this worker process is shutting down.
	errWorkerStopping = errors.New("worker stopped")
	// errStale: a master refused a write because the attempt is no longer
	// current; nothing more may be reported for it.
	errStale = errors.New("build attempt is stale")
	// errWriteRefused: a master refused a write for another reason, which
	// retrying cannot fix.
	errWriteRefused = errors.New("master refused a build write")
)

// buildRun is one build attempt on this worker. Two goroutines serve it:
// the executor runs the steps one after the other, and the reporter
// delivers each step's start, log and finish to the masters, in order,
// at its own pace. Steps never wait for a master, so a build runs on
// while no master answers; the reporter catches up from the spool files.
type buildRun struct {
	w   *Worker
	a   workerapi.Assignment
	log *slog.Logger

	// dir is the build directory, Basedir/<builder>/build; spoolDir holds
	// this build's step spools.
	dir      string
	spoolDir string

	// exec bounds the running steps; report bounds the delivery, which may
	// outlive the steps.
	exec       context.Context
	stopExec   context.CancelCauseFunc
	report     context.Context
	stopReport context.CancelCauseFunc

	// steps hands started steps to the reporter, in order; it is closed
	// once final is set.
	steps chan *stepReport
	final outcome
}

// stepReport is what the reporter delivers for one step.
type stepReport struct {
	number int
	name   string
	spool  *spool
	// done is closed when the step has ended and outcome and props are set.
	done    chan struct{}
	outcome outcome
	props   map[string]string
}

// runIn executes and reports the build, and removes its spools at the end.
// The build directory is used by one build at a time: slot is the
// builder's token, held while the steps run.
func (b *buildRun) runIn(slot chan struct{}) {
	defer b.stopExec(nil)
	defer b.stopReport(nil)

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		b.deliver()
	}()

	b.final = b.execute(slot)
	close(b.steps)
	wg.Wait()

	if err := os.RemoveAll(b.spoolDir); err != nil {
		b.log.Warn("cannot remove log spools", "path", b.spoolDir, "err", err)
	}
}

// execute runs the steps and returns the build's outcome: the worst of
// its steps' results, with the first failing step as the reason.
func (b *buildRun) execute(slot chan struct{}) outcome {
	select {
	case slot <- struct{}{}:
	default:
		b.log.Info("waiting for the previous build of this builder to end")
		select {
		case slot <- struct{}{}:
		case <-b.exec.Done():
			return stoppedOutcome(context.Cause(b.exec))
		}
	}
	defer func() { <-slot }()

	if err := b.prepare(); err != nil {
		b.log.Error("cannot prepare the build directory", "err", err)
		return outcome{build.Exception, err.Error()}
	}
	final := outcome{result: build.Success}
	for i, st := range b.a.Steps {
		if b.exec.Err() != nil {
			break
		}
		o := b.executeStep(i, st)
		final.result = build.Worse(final.result, o.result)
		if !o.ok() && final.reason == "" {
			final.reason = fmt.Sprintf("step %q: %s", stepName(st), o.reason)
		}
		if !o.ok() && (st.HaltOnFailure || o.result == build.Exception || o.result == build.Cancelled) {
			break
		}
	}
	if cause := context.Cause(b.exec); cause != nil {
		stopped := stoppedOutcome(cause)
		if build.Worse(final.result, stopped.result) != final.result {
			final = stopped
		}
	}
	return final
}

// prepare creates the build directory, emptied first when the master asks
// for a clean workspace.
func (b *buildRun) prepare() error {
	if b.a.CleanWorkspace {
		if err := os.RemoveAll(filepath.Dir(b.dir)); err != nil {
			return fmt.Errorf("clean workspace: %w", err)
		}
	}
	if err := os.MkdirAll(b.dir, 0o755); err != nil {
		return fmt.Errorf("create build directory: %w", err)
	}
	if err := os.MkdirAll(b.spoolDir, 0o700); err != nil {
		return fmt.Errorf("create spool directory: %w", err)
	}
	return nil
}

// executeStep runs the step at index i and hands it to the reporter. On
// the wire, steps are numbered from 1.
func (b *buildRun) executeStep(i int, st config.Step) outcome {
	number := i + 1
	log := b.log.With("step", number, "step_name", stepName(st))
	path := filepath.Join(b.spoolDir, strconv.Itoa(number)+".log")
	sp, err := newSpool(path, b.logLimit(), log)
	if err != nil {
		log.Error("cannot start step", "err", err)
		return outcome{build.Exception, err.Error()}
	}
	rep := &stepReport{number: number, name: stepName(st), spool: sp, done: make(chan struct{})}
	b.steps <- rep // buffered for every step: never blocks

	// The step's time limits start once it holds its locks.
	if len(st.Locks) > 0 {
		if o := b.acquireLocks(number, st.Locks, sp); !o.ok() {
			rep.outcome = o
			sp.close()
			close(rep.done)
			return o
		}
		defer b.releaseLocks(number)
	}
	log.Debug("step started")
	started := time.Now()
	var deadline time.Time
	if st.Timeout > 0 {
		deadline = started.Add(st.Timeout.D())
	}
	switch st.Kind {
	case config.StepShell:
		rep.outcome = b.shellStep(st, sp, deadline)
	case config.StepGit:
		rep.outcome, rep.props = b.gitStep(st, sp, deadline)
	default:
		rep.outcome = outcome{build.Exception, fmt.Sprintf("unknown step kind %q", st.Kind)}
	}
	sp.close()
	close(rep.done)

	log.Debug("step finished", "result", rep.outcome.result, "reason", rep.outcome.reason,
		"duration", time.Since(started).Round(time.Millisecond))
	return rep.outcome
}

// logLimit is the most output kept per step: the worker's spool limit, or
// the master's limit when that is lower.
func (b *buildRun) logLimit() int64 {
	limit := b.w.cfg.SpoolLimit
	if m := b.a.MaxStepLog; m > 0 && m < limit {
		limit = m
	}
	return limit
}

// shellStep runs the step's command with /bin/sh -c.
func (b *buildRun) shellStep(st config.Step, sp *spool, deadline time.Time) outcome {
	dir := filepath.Join(b.dir, st.Workdir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return outcome{build.Exception, fmt.Sprintf("create workdir: %v", err)}
	}
	return process{
		args:     []string{"/bin/sh", "-c", st.Command},
		dir:      dir,
		env:      b.env(st),
		out:      sp,
		deadline: deadline,
		timeout:  st.Timeout.D(),
		silence:  st.NoOutputTimeout.D(),
		grace:    b.w.cfg.KillGrace,
	}.run(b.exec)
}

// env is the environment of a step's commands, later entries winning:
// the worker's own environment, the REGENT_* variables describing the
// build (each property NAME as REGENT_PROP_NAME), the build's env, the
// step's env.
func (b *buildRun) env(st config.Step) []string {
	env := os.Environ()
	env = append(env,
		"REGENT_BUILDER="+b.a.Builder,
		"REGENT_BUILD_ID="+strconv.FormatInt(b.a.BuildID, 10),
		"REGENT_BUILD_NUMBER="+strconv.FormatInt(b.a.Number, 10),
		"REGENT_WORKER="+b.w.cfg.Name,
	)
	for _, k := range sortedKeys(b.a.Properties) {
		env = append(env, "REGENT_PROP_"+envName(k)+"="+b.a.Properties[k])
	}
	for _, k := range sortedKeys(b.a.Env) {
		env = append(env, k+"="+b.a.Env[k])
	}
	for _, k := range sortedKeys(st.Env) {
		env = append(env, k+"="+st.Env[k])
	}
	return env
}

// envName turns a property name into the tail of an environment variable
// name: upper case, anything but letters and digits as '_'.
func envName(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			return r
		}
		return '_'
	}, s)
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// stepName is the step's name, or one derived from it when it has none.
func stepName(st config.Step) string {
	if st.Name != "" {
		return st.Name
	}
	if st.Kind == config.StepShell {
		line, _, _ := strings.Cut(strings.TrimSpace(st.Command), "\n")
		if r := []rune(line); len(r) > 40 {
			line = string(r[:40]) + "…"
		}
		if line != "" {
			return line
		}
	}
	return st.Kind
}

// dirName maps a builder name to a single, safe path element: characters
// other than letters, digits, '-', '_' and '.' become '_', and so does a
// leading '.', so that no name can climb out of the base directory or
// meet the worker's own dot-directories.
func dirName(builder string) string {
	s := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9',
			r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, builder)
	if s == "" || s[0] == '.' {
		s = "_" + s
	}
	return s
}
