package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
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

	// props are the build's properties as the next step sees them: the
	// master's, then those set by earlier steps. Only the executor uses
	// them.
	props map[string]string
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
// the wire, steps are numbered from 1. The step's command and env are
// interpolated with the properties as they are when it starts, and the
// properties it sets count for the steps after it.
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
	end := func(o outcome) outcome {
		rep.outcome = o
		sp.close()
		close(rep.done)
		return o
	}

	st = build.InterpolateStep(st, b.props)
	secrets, o := b.resolveSecrets(st)
	if !o.ok() {
		log.Warn("cannot resolve the step's secrets", "reason", o.reason)
		return end(o)
	}
	sp.maskSecrets(slices.Collect(maps.Values(secrets)))

	// The step's time limits start once it holds its locks.
	if len(st.Locks) > 0 {
		if o := b.acquireLocks(number, st.Locks, sp); !o.ok() {
			return end(o)
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
		rep.outcome, rep.props = b.shellStep(st, secrets, sp, deadline)
	case config.StepGit:
		rep.outcome, rep.props = b.gitStep(st, secrets, sp, deadline)
	case config.StepTrigger:
		rep.outcome = b.triggerStep(number, st, sp)
	default:
		rep.outcome = outcome{build.Exception, fmt.Sprintf("unknown step kind %q", st.Kind)}
	}
	maps.Copy(b.props, rep.props)
	end(rep.outcome)

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

// maxPropertyOutput bounds the standard output a set_property step may
// turn into a property.
const maxPropertyOutput = 1 << 20

// shellStep runs the step's command with /bin/sh -c. A step with
// set_property returns its trimmed standard output, secret values masked,
// as that property when it succeeds.
func (b *buildRun) shellStep(st config.Step, secrets map[string]string, sp *spool,
	deadline time.Time) (outcome, map[string]string) {
	dir := filepath.Join(b.dir, st.Workdir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return outcome{build.Exception, fmt.Sprintf("create workdir: %v", err)}, nil
	}
	p := process{
		args:     []string{"/bin/sh", "-c", st.Command},
		dir:      dir,
		env:      b.env(st, secrets),
		out:      sp,
		deadline: deadline,
		timeout:  st.Timeout.D(),
		silence:  st.NoOutputTimeout.D(),
		grace:    b.w.cfg.KillGrace,
	}
	var stdout cappedBuffer
	if st.SetProperty != "" {
		stdout.limit = maxPropertyOutput
		p.stdout = &stdout
	}
	o := p.run(b.exec)
	if st.SetProperty == "" || !o.ok() {
		return o, nil
	}
	if stdout.over {
		return outcome{build.Failure, fmt.Sprintf("set_property %q: the standard output "+
			"is longer than %d bytes", st.SetProperty, maxPropertyOutput)}, nil
	}
	value := maskString(strings.TrimSpace(stdout.buf.String()), slices.Collect(maps.Values(secrets)))
	return o, map[string]string{st.SetProperty: value}
}

// cappedBuffer keeps up to limit bytes written to it and notes whether
// more came.
type cappedBuffer struct {
	buf   bytes.Buffer
	limit int
	over  bool
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	room := c.limit - c.buf.Len()
	if len(p) > room {
		c.over = true
		p = p[:max(room, 0)]
	}
	c.buf.Write(p)
	return len(p), nil
}

// resolveSecrets returns the values of the secrets in the builder's and
// the step's secret_env, by environment variable. A secret that the
// worker cannot resolve fails the step as an exception naming it.
func (b *buildRun) resolveSecrets(st config.Step) (map[string]string, outcome) {
	ok := outcome{result: build.Success}
	if len(b.a.SecretEnv) == 0 && len(st.SecretEnv) == 0 {
		return nil, ok
	}
	out := map[string]string{}
	for _, env := range []map[string]string{b.a.SecretEnv, st.SecretEnv} {
		for _, k := range sortedKeys(env) {
			name := env[k]
			if b.w.cfg.Secrets == nil {
				return nil, outcome{build.Exception, fmt.Sprintf("secret %q (env %s) cannot be "+
					"resolved: worker %s has no secrets configured (--secrets-dir or "+
					"%s* variables)", name, k, b.w.cfg.Name, config.DefaultEnvPrefix)}
			}
			v, err := b.w.cfg.Secrets.Secret(name)
			if err != nil {
				return nil, outcome{build.Exception, fmt.Sprintf("secret %q (env %s) cannot be "+
					"resolved on worker %s: %v", name, k, b.w.cfg.Name, err)}
			}
			out[k] = v
		}
	}
	return out, ok
}

// env is the environment of a step's commands, later entries winning:
// the worker's own environment less its REGENT_SECRET_* variables, the
// REGENT_* variables describing the build (each property NAME as
// REGENT_PROP_NAME), the build's env, the step's env, and the secrets
// (a builder's secret giving way to the step's plain env of that name).
func (b *buildRun) env(st config.Step, secrets map[string]string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, config.DefaultEnvPrefix) {
			env = append(env, kv)
		}
	}
	env = append(env,
		"REGENT_BUILDER="+b.a.Builder,
		"REGENT_BUILD_ID="+strconv.FormatInt(b.a.BuildID, 10),
		"REGENT_BUILD_NUMBER="+strconv.FormatInt(b.a.Number, 10),
		"REGENT_WORKER="+b.w.cfg.Name,
	)
	for _, k := range sortedKeys(b.props) {
		env = append(env, "REGENT_PROP_"+envName(k)+"="+b.props[k])
	}
	buildEnv := build.InterpolateEnv(b.a.Env, b.props)
	for _, k := range sortedKeys(buildEnv) {
		env = append(env, k+"="+buildEnv[k])
	}
	for _, k := range sortedKeys(st.Env) {
		env = append(env, k+"="+st.Env[k])
	}
	for _, k := range sortedKeys(secrets) {
		_, plain := st.Env[k]
		if _, stepSecret := st.SecretEnv[k]; plain && !stepSecret {
			continue
		}
		env = append(env, k+"="+secrets[k])
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
