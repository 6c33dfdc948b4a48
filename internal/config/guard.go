package config

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"time"

	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

// Limits on the values one operation of a configuration may build. They
// are far above what a configuration needs and far below what would hurt
// the process evaluating it.
const (
	maxValueBytes = 16 << 20 // a string, or the text of a formatted value
	maxElements   = 1 << 20  // a list, tuple, dict, set or range
	maxDepth      = 1000     // nesting of lists, tuples and dicts when formatted
	maxObjects    = 200_000  // constructor calls in one evaluation

	// Limits on the desired state, whose assembly and checks, in Go,
	// Starlark's step limit does not bound.
	maxBuilderSteps = 10_000      // steps of one builder
	maxTotalSteps   = 100_000     // steps of all builders
	maxStateItems   = maxElements // workers selected by tags, or trigger links, in all
	maxErrors       = 1000        // problems reported; the rest are counted
)

// errInternal marks an evaluation that failed on a bug, not on the
// configuration.
var errInternal = errors.New("internal error")

// errTooDeep reports a value nested too deeply to be formatted quickly.
var errTooDeep = fmt.Errorf("the value is nested more than %d levels deep", maxDepth)

// supervise runs the evaluation and stops it when ctx ends, when it runs
// longer than Options.Timeout, or when the heap of the process grows by
// more than Options.MaxHeapBytes meanwhile.
//
// The evaluation runs on its own goroutine because Starlark can interrupt
// interpreted code but not a built-in function in the middle of a long
// computation. If stopping takes longer than a short grace period, the
// caller gets its answer and the goroutine ends, unobserved, as soon as
// the built-in returns to the cancelled interpreter.
func (ev *evaluator) supervise(ctx context.Context) (outcome, error) {
	if err := ctx.Err(); err != nil {
		return outcome{}, fmt.Errorf("evaluate configuration: %w", err)
	}
	type result struct {
		out outcome
		err error
	}
	done := make(chan result, 1)
	start := heapBytes()
	go func() {
		// A panic is a bug of this package or of the interpreter; it
		// refuses the configuration instead of taking the master down.
		defer func() {
			if r := recover(); r != nil {
				done <- result{err: fmt.Errorf("evaluate configuration: %w: %v\n%s", errInternal, r, debug.Stack())}
			}
		}()
		out := ev.run()
		out.Prints = ev.takePrints()
		done <- result{out: out}
	}()

	timeout := time.NewTimer(ev.opts.Timeout)
	defer timeout.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	stop := func(reason string) (outcome, error) {
		ev.thread.Cancel(reason)
		select {
		case r := <-done:
			return r.out, r.err
		case <-time.After(500 * time.Millisecond):
			ev.abandoned.Store(true)
			return outcome{Errors: Errors{{Pos: Pos{File: EntryFile}, Msg: "evaluation stopped: " + reason}},
				Prints: ev.takePrints()}, nil
		}
	}
	for {
		select {
		case r := <-done:
			return r.out, r.err
		case <-ctx.Done():
			ev.abandoned.Store(true)
			ev.thread.Cancel("the evaluation was cancelled")
			return outcome{}, fmt.Errorf("evaluate configuration: %w", ctx.Err())
		case <-timeout.C:
			return stop(fmt.Sprintf("the evaluation took longer than %v", ev.opts.Timeout))
		case <-tick.C:
			if now := heapBytes(); now > start && now-start > ev.opts.MaxHeapBytes {
				return stop(fmt.Sprintf("the evaluation holds more than %s of memory; "+
					"look for a value that grows without bound", size(int64(ev.opts.MaxHeapBytes))))
			}
		}
	}
}

// takePrints returns the print() output so far and forgets it.
func (ev *evaluator) takePrints() []printed {
	ev.printMu.Lock()
	defer ev.printMu.Unlock()
	p := ev.prints
	ev.prints = nil
	return p
}

// heapBytes is the size of the heap objects of the process, live or not
// yet collected. Unlike the total allocated, it does not grow with memory
// that other goroutines allocate and drop while an evaluation runs.
func heapBytes() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// size renders a byte count for messages.
func size(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}

// product is a*b for positive numbers, saturating instead of overflowing.
func product(a, b int64) int64 {
	if a != 0 && b > math.MaxInt64/a {
		return math.MaxInt64
	}
	return a * b
}

// tooLarge is the error of an operation whose result would be too large.
func tooLarge(what string, n int64) error {
	return fmt.Errorf("%s would make a string of %s; a configuration value may hold at most %s",
		what, size(n), size(maxValueBytes))
}

// tooMany is the error of an operation whose result would have too many
// elements.
func tooMany(what string, n int64) error {
	return fmt.Errorf("%s would make %d elements; a configuration value may hold at most %d",
		what, n, maxElements)
}

// guardBuiltins returns the guarded built-ins called by rewritten code and
// the guarded replacements of universal built-ins.
func guardBuiltins() starlark.StringDict {
	d := starlark.StringDict{
		guardAdd:      starlark.NewBuiltin("+", guardedAdd),
		guardMul:      starlark.NewBuiltin("*", guardedMul),
		guardMod:      starlark.NewBuiltin("%", guardedMod),
		guardAttrName: starlark.NewBuiltin(".", guardedAttr),
		"getattr":     starlark.NewBuiltin("getattr", guardedGetattr),
	}
	for _, name := range []string{"range", "list", "tuple", "sorted", "set", "dict", "enumerate", "reversed"} {
		d[name] = sizedCollection(name)
	}
	for _, name := range []string{"str", "repr", "print"} {
		d[name] = sizedText(name)
	}
	return d
}

// binaryArgs unpacks the two operands of a guarded operator.
func binaryArgs(args starlark.Tuple) (x, y starlark.Value) {
	return args[0], args[1]
}

func guardedAdd(_ *starlark.Thread, _ *starlark.Builtin,
	args starlark.Tuple, _ []starlark.Tuple) (starlark.Value, error) {
	x, y := binaryArgs(args)
	switch x.(type) {
	case starlark.String, starlark.Bytes:
		if n := starlark.Len(x) + max(starlark.Len(y), 0); n > maxValueBytes {
			return nil, tooLarge("this concatenation", int64(n))
		}
	case *starlark.List, starlark.Tuple:
		if n := starlark.Len(x) + starlark.Len(y); n > maxElements {
			return nil, tooMany("this concatenation", int64(n))
		}
	}
	return starlark.Binary(syntax.PLUS, x, y)
}

func guardedMul(_ *starlark.Thread, _ *starlark.Builtin,
	args starlark.Tuple, _ []starlark.Tuple) (starlark.Value, error) {
	x, y := binaryArgs(args)
	seq, count := x, y
	if _, ok := x.(starlark.Int); ok {
		seq, count = y, x
	}
	n, ok := count.(starlark.Int)
	if !ok {
		return starlark.Binary(syntax.STAR, x, y)
	}
	times, exact := n.Int64()
	if !exact {
		times = math.MaxInt64
	}
	switch seq := seq.(type) {
	case starlark.String, starlark.Bytes:
		if l := int64(starlark.Len(seq)); l > 0 && times > maxValueBytes/l {
			return nil, tooLarge("this repetition", product(l, times))
		}
	case *starlark.List, starlark.Tuple:
		if l := int64(starlark.Len(seq)); l > 0 && times > maxElements/l {
			return nil, tooMany("this repetition", product(l, times))
		}
	}
	return starlark.Binary(syntax.STAR, x, y)
}

func guardedMod(_ *starlark.Thread, _ *starlark.Builtin,
	args starlark.Tuple, _ []starlark.Tuple) (starlark.Value, error) {
	x, y := binaryArgs(args)
	if format, ok := x.(starlark.String); ok {
		if err := checkFormat("this % formatting", string(format), '%', []starlark.Value{y}); err != nil {
			return nil, err
		}
	}
	return starlark.Binary(syntax.PERCENT, x, y)
}

// checkFormat refuses formatting whose result could be too large: each
// placeholder (counted by its introducing character) may insert the
// largest of the arguments.
func checkFormat(what, format string, intro byte, args []starlark.Value) error {
	largest := 0
	for _, a := range args {
		if t, ok := a.(starlark.Tuple); ok && intro == '%' {
			for _, e := range t {
				n, err := textSize(e)
				if err != nil {
					return err
				}
				largest = max(largest, n)
			}
			continue
		}
		n, err := textSize(a)
		if err != nil {
			return err
		}
		largest = max(largest, n)
	}
	total := int64(len(format)) + int64(strings.Count(format, string(intro)))*int64(largest)
	if total > maxValueBytes {
		return tooLarge(what, total)
	}
	return nil
}

// guardedAttr implements x.name for the rewritten code.
func guardedAttr(_ *starlark.Thread, _ *starlark.Builtin,
	args starlark.Tuple, _ []starlark.Tuple) (starlark.Value, error) {
	return guardAttr(args[0], string(args[1].(starlark.String)))
}

// guardedGetattr replaces the universal getattr, which would otherwise
// hand out the methods the rewrite guards.
func guardedGetattr(_ *starlark.Thread, _ *starlark.Builtin,
	args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var x, dflt starlark.Value
	var name string
	if err := starlark.UnpackPositionalArgs("getattr", args, kwargs, 2, &x, &name, &dflt); err != nil {
		return nil, err
	}
	v, err := guardAttr(x, name)
	switch {
	case err != nil && dflt != nil:
		return dflt, nil
	case err != nil:
		return nil, fmt.Errorf("getattr: %w", err)
	}
	return v, nil
}

// guardAttr returns x.name, wrapping the methods that can build large
// values in a check of the size of their result.
func guardAttr(x starlark.Value, name string) (starlark.Value, error) {
	attr, err := attrOf(x, name)
	if err != nil {
		return nil, err
	}
	method, ok := attr.(*starlark.Builtin)
	if !ok || !guardedMethods[name] {
		return attr, nil
	}
	return starlark.NewBuiltin(name, func(th *starlark.Thread, _ *starlark.Builtin,
		args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		if err := checkMethod(x, name, args, kwargs); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		return starlark.Call(th, method, args, kwargs)
	}), nil
}

// attrOf returns x.name, with the interpreter's message when there is no
// such attribute.
func attrOf(x starlark.Value, name string) (starlark.Value, error) {
	if h, ok := x.(starlark.HasAttrs); ok {
		v, err := h.Attr(name)
		if err != nil || v != nil {
			return v, err
		}
	}
	return nil, fmt.Errorf("%s has no .%s field or method", x.Type(), name)
}

// checkMethod refuses a method call whose result could be too large.
func checkMethod(recv starlark.Value, name string, args starlark.Tuple, kwargs []starlark.Tuple) error {
	if l, ok := recv.(*starlark.List); ok && name == "extend" && len(args) == 1 {
		if n := l.Len() + starlark.Len(args[0]); n > maxElements {
			return tooMany("this extension", int64(n))
		}
		return nil
	}
	s, ok := recv.(starlark.String)
	if !ok {
		return nil
	}
	switch name {
	case "join":
		if len(args) == 1 {
			return checkJoin(string(s), args[0])
		}
	case "format":
		all := append([]starlark.Value{}, args...)
		for _, kv := range kwargs {
			all = append(all, kv[1])
		}
		return checkFormat("this format", string(s), '{', all)
	case "replace":
		if len(args) >= 2 {
			old, _ := starlark.AsString(args[0])
			repl, _ := starlark.AsString(args[1])
			n := strings.Count(string(s), old)
			if total := int64(len(s)) + int64(n)*int64(len(repl)-len(old)); total > maxValueBytes {
				return tooLarge("this replacement", total)
			}
		}
	case "split", "rsplit", "splitlines":
		if parts := countParts(string(s), name, args); parts > maxElements {
			return tooMany("this split", int64(parts))
		}
	}
	return nil
}

// checkJoin refuses a join whose result would be too large.
func checkJoin(sep string, iterable starlark.Value) error {
	if n := starlark.Len(iterable); n > maxElements {
		return tooMany("this join", int64(n))
	}
	it, ok := iterable.(starlark.Iterable)
	if !ok {
		return nil
	}
	iter := it.Iterate()
	defer iter.Done()
	var total int64
	var x starlark.Value
	for iter.Next(&x) {
		s, _ := starlark.AsString(x)
		total += int64(len(s) + len(sep))
	}
	if total > maxValueBytes {
		return tooLarge("this join", total)
	}
	return nil
}

// countParts bounds the number of parts a split method returns.
func countParts(s, method string, args starlark.Tuple) int {
	if method == "splitlines" {
		return strings.Count(s, "\n") + strings.Count(s, "\r") + 1
	}
	if len(args) > 0 {
		if sep, ok := starlark.AsString(args[0]); ok && sep != "" {
			return strings.Count(s, sep) + 1
		}
	}
	return strings.Count(s, " ") + strings.Count(s, "\t") + strings.Count(s, "\n") + 1
}

// sizedCollection wraps a universal built-in that builds a collection from
// its first argument so that it refuses a too large one up front.
func sizedCollection(name string) *starlark.Builtin {
	real := starlark.Universe[name].(*starlark.Builtin)
	return starlark.NewBuiltin(name, func(th *starlark.Thread, _ *starlark.Builtin,
		args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		if name != "range" && len(args) > 0 {
			if n := starlark.Len(args[0]); n > maxElements {
				return nil, fmt.Errorf("%s: %w", name, tooMany("this call", int64(n)))
			}
		}
		v, err := starlark.Call(th, real, args, kwargs)
		if err != nil {
			return nil, err
		}
		if name == "range" {
			if n := starlark.Len(v); n > maxElements {
				return nil, fmt.Errorf("range: %w", tooMany("this range", int64(n)))
			}
		}
		return v, nil
	})
}

// sizedText wraps a universal built-in that formats its arguments so that
// it refuses values too large or too deep to format quickly.
func sizedText(name string) *starlark.Builtin {
	real := starlark.Universe[name].(*starlark.Builtin)
	return starlark.NewBuiltin(name, func(th *starlark.Thread, _ *starlark.Builtin,
		args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var total int64
		for _, a := range args {
			n, err := textSize(a)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			total += int64(n)
		}
		if total > maxValueBytes {
			return nil, fmt.Errorf("%s: %w", name, tooLarge("formatting this value", total))
		}
		return starlark.Call(th, real, args, kwargs)
	})
}

// textSize estimates the length of the text of v, stopping early once it
// exceeds maxValueBytes. It fails for values nested too deeply.
func textSize(v starlark.Value) (int, error) {
	var s sizer
	if err := s.walk(v, 0); err != nil {
		return 0, err
	}
	return s.size, nil
}

// sizer walks a value adding up the length of its text.
type sizer struct {
	size   int
	onPath map[starlark.Value]bool // containers being walked, to spot cycles
}

func (s *sizer) walk(v starlark.Value, depth int) error {
	if s.size > maxValueBytes {
		return nil
	}
	if depth > maxDepth {
		return errTooDeep
	}
	switch v := v.(type) {
	case starlark.String:
		s.size += len(v) + 2
	case starlark.Bytes:
		s.size += len(v) + 3
	case starlark.Int:
		if _, ok := v.Int64(); ok {
			s.size += 20
		} else {
			s.size += v.BigInt().BitLen()/3 + 1
		}
	case starlark.Tuple:
		return s.walkAll(v, depth)
	case *starlark.List, *starlark.Dict, *starlark.Set:
		if s.onPath[v] {
			s.size += 5
			return nil
		}
		if s.onPath == nil {
			s.onPath = map[starlark.Value]bool{}
		}
		s.onPath[v] = true
		defer delete(s.onPath, v)
		if d, ok := v.(*starlark.Dict); ok {
			for _, kv := range d.Items() {
				if err := s.walkAll(kv, depth); err != nil {
					return err
				}
			}
			return nil
		}
		return s.walkAll(v.(starlark.Iterable), depth)
	default:
		s.size += 24
	}
	return nil
}

// walkAll walks the elements of a container.
func (s *sizer) walkAll(c starlark.Iterable, depth int) error {
	iter := c.Iterate()
	defer iter.Done()
	var x starlark.Value
	for iter.Next(&x) {
		s.size += 2
		if err := s.walk(x, depth+1); err != nil {
			return err
		}
		if s.size > maxValueBytes {
			return nil
		}
	}
	return nil
}
