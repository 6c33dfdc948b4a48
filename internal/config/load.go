package config

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.starlark.net/resolve"
	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

// EntryFile is the file, at the configuration root, that evaluation starts
// from.
const EntryFile = "regent.star"

// Defaults for [Options].
const (
	DefaultMaxSteps     = 10_000_000
	DefaultTimeout      = 10 * time.Second
	DefaultMaxHeapBytes = 512 << 20
)

// Options tunes how a configuration is evaluated. The zero value is usable.
type Options struct {
	// Secrets resolves secret("name") references. Without it, a
	// configuration that uses secret() is refused.
	Secrets SecretProvider
	// MaxSteps bounds the Starlark computation steps of one evaluation,
	// stopping endless loops. Zero means DefaultMaxSteps.
	MaxSteps uint64
	// Timeout bounds the wall-clock time of one evaluation. Zero means
	// DefaultTimeout.
	Timeout time.Duration
	// MaxHeapBytes stops an evaluation during which the heap of the
	// process grows by more than this many bytes. It is measured on the
	// whole process, so it is a coarse guard against configurations that
	// hoard memory, not an accounting. Zero means DefaultMaxHeapBytes.
	MaxHeapBytes uint64
	// Print receives the output of the configuration's print() calls,
	// with their position, once the evaluation has ended. Nil discards
	// it.
	Print func(pos Pos, msg string)
	// InProcess makes Load evaluate in the calling process instead of a
	// child process. It is faster, but a few Starlark built-ins cannot be
	// interrupted: a hostile configuration can then keep a goroutine
	// busy long after Load has returned. LoadFS always evaluates in
	// process.
	InProcess bool
}

// withDefaults fills zero fields with their defaults.
func (o Options) withDefaults() Options {
	if o.MaxSteps == 0 {
		o.MaxSteps = DefaultMaxSteps
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MaxHeapBytes == 0 {
		o.MaxHeapBytes = DefaultMaxHeapBytes
	}
	return o
}

// Load evaluates the configuration whose entry file is root/regent.star and
// returns the desired state it declares.
//
// A configuration that fails to evaluate or to validate is refused with
// [Errors], listing every problem found with its file (relative to root),
// line and column. Other errors (an unreadable root, a cancelled context)
// are returned wrapped. Evaluation reads only files under root and is
// deterministic: the same files and secrets give the same state.
//
// Unless Options.InProcess is set, the configuration is evaluated in a
// child process, the running executable started again (see isolate.go),
// so that no configuration can keep this process busy or exhaust its
// memory; secrets are resolved in this process.
func Load(ctx context.Context, root string, opts Options) (*State, error) {
	opts = opts.withDefaults()
	if !opts.InProcess {
		return loadIsolated(ctx, root, opts)
	}
	r, err := os.OpenRoot(root)
	if err != nil {
		return nil, fmt.Errorf("open configuration root: %w", err)
	}
	defer r.Close()
	return LoadFS(ctx, r.FS(), opts)
}

// LoadFS is [Load] reading the configuration from fsys, whose root holds
// regent.star. Positions in errors are paths within fsys.
func LoadFS(ctx context.Context, fsys fs.FS, opts Options) (*State, error) {
	opts = opts.withDefaults()
	out, err := newEvaluator(fsys, opts).supervise(ctx)
	if err != nil {
		return nil, err
	}
	for _, p := range out.Prints {
		opts.Print(p.Pos, p.Msg)
	}
	return out.finish(opts.Secrets)
}

// evaluator holds the state of one evaluation: the Starlark thread, the
// modules loaded so far, the objects declared and the problems found.
type evaluator struct {
	fsys        fs.FS
	opts        Options
	thread      *starlark.Thread
	predeclared starlark.StringDict

	modules map[string]*module // by path under the root
	loading []string           // modules being executed, outermost first
	calls   map[callSite]Pos   // opening parenthesis of a call -> start of the call

	decl    declarations
	objects int // constructor calls so far, bounded by maxObjects
	steps   int // steps of all builders, bounded by maxTotalSteps
	errs    Errors
	dropped int // problems found beyond maxErrors

	// abandoned is set when Load has returned without waiting for the
	// evaluation to end: there is no point in validating it then.
	abandoned atomic.Bool

	printMu sync.Mutex
	prints  []printed // print() output, up to maxErrors lines
}

// module is the outcome of executing one file.
type module struct {
	globals starlark.StringDict
	err     error
}

// callSite identifies a position in a file.
type callSite struct {
	file      string
	line, col int32
}

// errReported says that a loaded module failed and its problems are
// already recorded, so the load statement adds nothing.
var errReported = errors.New("the loaded file has errors")

// fileOptions are the Starlark dialect of configurations. For convenience,
// for and if statements may appear at the top level of a file, and so
// globals may be assigned again (two loops may use the same variable);
// set() is available. While loops and recursion stay forbidden, so that
// every evaluation visibly ends.
var fileOptions = &syntax.FileOptions{Set: true, TopLevelControl: true, GlobalReassign: true}

func newEvaluator(fsys fs.FS, opts Options) *evaluator {
	ev := &evaluator{
		fsys:    fsys,
		opts:    opts,
		modules: map[string]*module{},
		calls:   map[callSite]Pos{},
	}
	ev.thread = &starlark.Thread{Name: "config", Load: ev.load, Print: ev.print}
	ev.thread.SetMaxExecutionSteps(opts.MaxSteps)
	ev.thread.OnMaxSteps = func(th *starlark.Thread) {
		th.Cancel(fmt.Sprintf("the configuration ran for more than %d steps; "+
			"look for a loop that does not end", opts.MaxSteps))
	}
	ev.predeclared = ev.builtins()
	return ev
}

// run runs the entry file and, if it ran, validates what it declared.
func (ev *evaluator) run() outcome {
	if _, err := fs.Stat(ev.fsys, EntryFile); err != nil {
		return outcome{Errors: Errors{{Pos: Pos{File: EntryFile},
			Msg: "no " + EntryFile + " at the configuration root: it is the file evaluation starts from"}}}
	}
	_, err := ev.exec(EntryFile)
	if err != nil && !errors.Is(err, errReported) {
		ev.errs = append(ev.errs, ev.convertError(err)...)
	}
	var out outcome
	if err == nil && !ev.abandoned.Load() {
		ev.validate()
		out.Secrets = ev.secretUses()
	}
	out.Errors, out.Dropped = ev.errs, ev.dropped
	if len(ev.errs) == 0 {
		out.State = ev.state()
	}
	return out
}

// exec parses, compiles and runs the file at p, caching the outcome.
func (ev *evaluator) exec(p string) (starlark.StringDict, error) {
	if m, ok := ev.modules[p]; ok {
		return m.globals, m.err
	}
	ev.loading = append(ev.loading, p)
	globals, err := ev.execUncached(p)
	ev.loading = ev.loading[:len(ev.loading)-1]
	ev.modules[p] = &module{globals: globals, err: err}
	return globals, err
}

func (ev *evaluator) execUncached(p string) (starlark.StringDict, error) {
	src, err := readFile(ev.fsys, p)
	if err != nil {
		return nil, err
	}
	f, err := fileOptions.Parse(p, src, 0)
	if err != nil {
		var serr syntax.Error
		if errors.As(err, &serr) {
			ev.errs = append(ev.errs, &Error{Pos: parseErrorPos(src, serr), Msg: serr.Msg})
		} else {
			ev.errs = append(ev.errs, ev.convertError(err)...)
		}
		return nil, errReported
	}
	ev.indexCalls(f)
	rewriteFile(f)
	prog, err := starlark.FileProgram(f, ev.predeclared.Has)
	if err != nil {
		ev.errs = append(ev.errs, ev.convertError(err)...)
		return nil, errReported
	}
	globals, err := prog.Init(ev.thread, ev.predeclared)
	if err != nil {
		if !errors.Is(err, errReported) {
			ev.errs = append(ev.errs, ev.convertError(err)...)
		}
		return nil, errReported
	}
	globals.Freeze()
	return globals, nil
}

// maxFileBytes bounds the size of one configuration file.
const maxFileBytes = 8 << 20

// readFile reads a configuration file, refusing one too large to be a
// configuration before reading it all.
func readFile(fsys fs.FS, p string) ([]byte, error) {
	f, err := fsys.Open(p)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	defer f.Close()
	src, err := io.ReadAll(io.LimitReader(f, maxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	if len(src) > maxFileBytes {
		return nil, fmt.Errorf("%s is larger than %s, too large for a configuration file", p, size(maxFileBytes))
	}
	return src, nil
}

// load implements load() statements: paths are relative to the
// configuration root and must name a .star file under it.
func (ev *evaluator) load(th *starlark.Thread, name string) (starlark.StringDict, error) {
	p, err := modulePath(name)
	if err != nil {
		return nil, err
	}
	for i, l := range ev.loading {
		if l == p {
			cycle := append(append([]string{}, ev.loading[i:]...), p)
			return nil, fmt.Errorf("load cycle: %s", strings.Join(cycle, " -> "))
		}
	}
	if _, err := fs.Stat(ev.fsys, p); err != nil {
		return nil, fmt.Errorf("no file %s under the configuration root "+
			"(or it is a link leading outside it)", p)
	}
	return ev.exec(p)
}

// modulePath checks a load() path and returns it cleaned.
func modulePath(name string) (string, error) {
	switch {
	case name == "":
		return "", errors.New("empty path")
	case strings.HasPrefix(name, "/") || strings.Contains(name, `\`):
		return "", errors.New("absolute paths are not allowed: load files by their " +
			"path relative to the configuration root, such as \"lib/common.star\"")
	case !strings.HasSuffix(name, ".star"):
		return "", errors.New("only .star files can be loaded")
	}
	p := path.Clean(name)
	if p == ".." || strings.HasPrefix(p, "../") || !fs.ValidPath(p) {
		return "", errors.New("the path leaves the configuration root; " +
			"only files under it can be loaded")
	}
	return p, nil
}

// print keeps print() output for Options.Print.
func (ev *evaluator) print(th *starlark.Thread, msg string) {
	if ev.opts.Print == nil {
		return
	}
	ev.printMu.Lock()
	defer ev.printMu.Unlock()
	if len(ev.prints) < maxErrors {
		ev.prints = append(ev.prints, printed{Pos: ev.callerPos(th), Msg: msg})
	}
}

// errorf records a problem, up to maxErrors of them.
func (ev *evaluator) errorf(pos Pos, kind, name, format string, args ...any) {
	if len(ev.errs) >= maxErrors {
		ev.dropped++
		return
	}
	ev.errs.add(pos, kind, name, format, args...)
}

// convertError turns a Starlark parse, resolve or evaluation error into
// positioned problems.
func (ev *evaluator) convertError(err error) Errors {
	var (
		serr  syntax.Error
		rerrs resolve.ErrorList
		eerr  *starlark.EvalError
	)
	switch {
	case errors.As(err, &rerrs):
		var out Errors
		for _, e := range rerrs {
			out.add(toPos(e.Pos), "", "", "%s", e.Msg)
		}
		return out
	case errors.As(err, &serr):
		return Errors{{Pos: toPos(serr.Pos), Msg: serr.Msg}}
	case errors.As(err, &eerr):
		return Errors{{Pos: ev.evalErrorPos(eerr), Msg: explain(eerr.Msg)}}
	}
	return Errors{{Pos: Pos{File: EntryFile}, Msg: err.Error()}}
}

// evalErrorPos is the position of the innermost Starlark frame of an
// evaluation error.
func (ev *evaluator) evalErrorPos(e *starlark.EvalError) Pos {
	last := len(e.CallStack) - 1
	if strings.HasSuffix(e.Msg, "called recursively") {
		last-- // the innermost frame is the call refused, not yet started
	}
	for i := last; i >= 0; i-- {
		p := e.CallStack[i].Pos
		if p.Filename() != "<builtin>" && p.Line > 0 {
			return ev.pos(p)
		}
	}
	return Pos{File: EntryFile}
}

// explain rewords the Starlark interpreter's terser messages.
func explain(msg string) string {
	const cancelled = "Starlark computation cancelled: "
	if rest, ok := strings.CutPrefix(msg, cancelled); ok {
		return "evaluation stopped: " + rest
	}
	if strings.HasSuffix(msg, "called recursively") {
		return msg + " (recursion is not allowed in configurations; use a loop instead)"
	}
	return msg
}
