package config

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrSecretNotFound is returned by a [SecretProvider] that does not hold
// the secret asked for.
var ErrSecretNotFound = errors.New("secret not found")

// Error is one problem found in a configuration: where it is, which object
// it concerns, and what is wrong.
type Error struct {
	// Pos is where the problem is, its file relative to the
	// configuration root.
	Pos Pos
	// Kind is the kind of the offending object ("builder", "worker",
	// "git_repo", "scheduler", "lock", "step", "secret"); empty for
	// errors that concern no object, such as a syntax error.
	Kind string
	// Name is the offending object's name, when it has one.
	Name string
	// Msg says what is wrong and, where it helps, what to do.
	Msg string
}

// Error formats the problem as `file:line:col: kind "name": message`.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Pos.String())
	b.WriteString(": ")
	if e.Kind != "" {
		if e.Name != "" {
			fmt.Fprintf(&b, "%s %q: ", e.Kind, e.Name)
		} else {
			b.WriteString(e.Kind + ": ")
		}
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in a configuration, sorted by position.
// [Load] returns it, as an error, when the configuration is refused.
type Errors []*Error

// Error prints one problem per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the problems as a slice of errors, for errors.Is and
// errors.As.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// add records a problem.
func (es *Errors) add(pos Pos, kind, name, format string, args ...any) {
	*es = append(*es, &Error{Pos: pos, Kind: kind, Name: name, Msg: fmt.Sprintf(format, args...)})
}

// sort orders the problems by file, line and column, keeping the order of
// detection among problems at the same position, and drops exact repeats.
func (es Errors) sort() Errors {
	slices.SortStableFunc(es, func(a, b *Error) int {
		return cmp.Or(
			cmp.Compare(a.Pos.File, b.Pos.File),
			cmp.Compare(a.Pos.Line, b.Pos.Line),
			cmp.Compare(a.Pos.Col, b.Pos.Col),
		)
	})
	return slices.CompactFunc(es, func(a, b *Error) bool { return *a == *b })
}
