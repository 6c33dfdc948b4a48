package config

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"go.starlark.net/starlark"
)

// Limits on the text of fields.
const (
	maxTextBytes    = 64 << 10 // descriptions, env and property values, URLs
	maxCommandBytes = 1 << 20  // shell commands
)

var (
	nameRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`)
	envKeyRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)
)

// CheckName says what is wrong with a name, if anything, by the rule
// every object of a configuration is named by; names given elsewhere
// that a configuration refers to (a master's name and tags) follow it
// too.
func CheckName(s string) error { return checkName(s) }

// checkName says what is wrong with a name, if anything.
func checkName(s string) error {
	if !nameRE.MatchString(s) {
		return fmt.Errorf("%q is not a valid name: use 1 to 100 letters, digits, '.', '_' or '-', "+
			"starting with a letter or digit", s)
	}
	return nil
}

// call is one constructor call being converted into a declaration: it
// knows where the call is and what it declares, for the errors of its
// arguments.
type call struct {
	ev   *evaluator
	pos  Pos
	kind string
	name string
	bad  bool // an argument was refused
}

// begin starts converting a call of the constructor fn: it unpacks the
// arguments into the *starlark.Value targets of pairs. When unpacking
// fails, the problem is recorded and ok is false.
func (ev *evaluator) begin(th *starlark.Thread, fn *starlark.Builtin, kind string,
	args starlark.Tuple, kwargs []starlark.Tuple, pairs ...any) (c *call, ok bool, err error) {
	ev.objects++
	if ev.objects > maxObjects {
		return nil, false, fmt.Errorf("more than %d objects declared; look for a loop that does not end", maxObjects)
	}
	c = &call{ev: ev, pos: ev.callerPos(th), kind: kind, name: guessName(kind, args, kwargs)}
	if err := starlark.UnpackArgs(fn.Name(), args, kwargs, pairs...); err != nil {
		c.errorf("%s", strings.TrimPrefix(err.Error(), fn.Name()+": "))
		return c, false, nil
	}
	return c, true, nil
}

// guessName finds the name argument of a call before its arguments are
// checked, so that every error can name the object. A step's first
// argument is not its name.
func guessName(kind string, args starlark.Tuple, kwargs []starlark.Tuple) string {
	for _, kv := range kwargs {
		if s, ok := kv[1].(starlark.String); ok && kv[0] == starlark.String("name") && len(s) <= 100 {
			return string(s)
		}
	}
	if len(args) > 0 && kind != kindStep {
		if s, ok := args[0].(starlark.String); ok && len(s) <= 100 {
			return string(s)
		}
	}
	return ""
}

// errorf records a problem with the call.
func (c *call) errorf(format string, args ...any) {
	c.bad = true
	c.ev.errorf(c.pos, c.kind, c.name, format, args...)
}

// given reports whether an optional argument was given a value other
// than None.
func given(v starlark.Value) bool {
	return v != nil && v != starlark.None
}

// typeError records that field has a value of the wrong type.
func (c *call) typeError(field, want string, v starlark.Value) {
	c.errorf("%s: want %s, got %s", field, want, v.Type())
}

// objectName converts the name argument of a named object.
func (c *call) objectName(v starlark.Value) string {
	s, ok := v.(starlark.String)
	if !ok {
		c.typeError("name", "a string", v)
		return ""
	}
	if err := checkName(string(s)); err != nil {
		c.errorf("name: %v", err)
	}
	c.name = string(s)
	return string(s)
}

// text converts an optional string argument of at most limit bytes.
func (c *call) text(field string, v starlark.Value, def string, limit int) string {
	if !given(v) {
		return def
	}
	s, ok := v.(starlark.String)
	if !ok {
		c.typeError(field, "a string", v)
		return def
	}
	if len(s) > limit {
		c.errorf("%s: the string holds %s, more than the %s allowed", field, size(int64(len(s))), size(int64(limit)))
		return def
	}
	if strings.ContainsRune(string(s), 0) {
		c.errorf("%s: the string holds a NUL character", field)
		return def
	}
	return string(s)
}

// boolean converts an optional bool argument.
func (c *call) boolean(field string, v starlark.Value, def bool) bool {
	if !given(v) {
		return def
	}
	b, ok := v.(starlark.Bool)
	if !ok {
		c.typeError(field, "True or False", v)
		return def
	}
	return bool(b)
}

// integer converts an optional int argument within [lo, hi].
func (c *call) integer(field string, v starlark.Value, def, lo, hi int) int {
	if !given(v) {
		return def
	}
	i, ok := v.(starlark.Int)
	if !ok {
		c.typeError(field, "an int", v)
		return def
	}
	n, exact := i.Int64()
	if !exact || n < int64(lo) || n > int64(hi) {
		c.errorf("%s: %v is out of range; want %d to %d", field, i, lo, hi)
		return def
	}
	return int(n)
}

// duration converts an optional duration argument, a string in Go syntax.
// None gives zero when noneOK, def otherwise; a given duration must be at
// least least.
func (c *call) duration(field string, v starlark.Value, def string, least time.Duration, noneOK bool) Duration {
	if v == starlark.None && noneOK {
		return 0
	}
	s := def
	if given(v) {
		str, ok := v.(starlark.String)
		if !ok {
			c.typeError(field, `a duration string such as "90s"`, v)
			return 0
		}
		s = string(str)
	}
	if s == "" {
		return 0
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		c.errorf(`%s: %q is not a duration; write it in Go syntax, such as "90s", "10m" or "1h30m"`, field, s)
		return 0
	}
	if d < least {
		c.errorf("%s: %v is too short; want at least %v", field, d, least)
		return 0
	}
	return Duration(d)
}

// list converts a list or tuple argument; a single value that is neither
// is taken as a list of one when single is true.
func (c *call) list(field string, v starlark.Value, single bool) ([]starlark.Value, bool) {
	if !given(v) {
		return nil, true
	}
	switch l := v.(type) {
	case *starlark.List:
		if l.Len() > maxElements {
			c.errorf("%s: too many elements", field)
			return nil, false
		}
		out := make([]starlark.Value, l.Len())
		for i := range out {
			out[i] = l.Index(i)
		}
		return out, true
	case starlark.Tuple:
		return l, true
	}
	if single {
		return []starlark.Value{v}, true
	}
	c.typeError(field, "a list", v)
	return nil, false
}

// strings converts a list of strings, each checked by check when not nil,
// dropping repeats. A missing argument gives def.
func (c *call) strings(field string, v starlark.Value, def []string, check func(string) error) []string {
	if !given(v) {
		return def
	}
	items, ok := c.list(field, v, false)
	if !ok {
		return nil
	}
	out := make([]string, 0, len(items))
	seen := map[string]bool{}
	for _, x := range items {
		s, ok := x.(starlark.String)
		if !ok {
			c.typeError(field, "a list of strings", x)
			continue
		}
		if check != nil {
			if err := check(string(s)); err != nil {
				c.errorf("%s: %v", field, err)
				continue
			}
		}
		if !seen[string(s)] {
			seen[string(s)] = true
			out = append(out, string(s))
		}
	}
	return out
}

// refs converts a reference, or a list of references, to objects of kind:
// values returned by their constructor, or their names.
func (c *call) refs(field string, v starlark.Value, kind string) []string {
	items, ok := c.list(field, v, true)
	if !ok {
		return nil
	}
	out := make([]string, 0, len(items))
	seen := map[string]bool{}
	for _, x := range items {
		name, ok := c.ref(field, x, kind)
		if ok && !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
	}
	return out
}

// ref converts one reference to an object of kind.
func (c *call) ref(field string, x starlark.Value, kind string) (string, bool) {
	switch x := x.(type) {
	case starlark.String:
		if err := checkName(string(x)); err != nil {
			c.errorf("%s: %v", field, err)
			return "", false
		}
		return string(x), true
	case *entity:
		if x.kind == kind {
			return x.name, true
		}
		c.errorf("%s: want a %s or its name, got %v", field, kind, x)
		return "", false
	}
	c.typeError(field, "a "+kind+" or its name", x)
	return "", false
}

// env converts an env dict: names to strings or secret() references.
func (c *call) env(field string, v starlark.Value) (plain, secret map[string]string, refs []*secretValue) {
	c.dict(field, v, func(key string, val starlark.Value) {
		if !envKeyRE.MatchString(key) {
			c.errorf("%s: %q is not a valid environment variable name", field, key)
			return
		}
		switch val := val.(type) {
		case *secretValue:
			if secret == nil {
				secret = map[string]string{}
			}
			secret[key] = val.name
			refs = append(refs, val)
		case starlark.String:
			if plain == nil {
				plain = map[string]string{}
			}
			plain[key] = c.text(field+"["+key+"]", val, "", maxTextBytes)
		default:
			c.typeError(field+"["+key+"]", "a string or a secret()", val)
		}
	})
	return plain, secret, refs
}

// properties converts a properties dict: names to strings, ints or bools,
// kept as their text.
func (c *call) properties(field string, v starlark.Value) map[string]string {
	var out map[string]string
	c.dict(field, v, func(key string, val starlark.Value) {
		if err := checkName(key); err != nil {
			c.errorf("%s: %v", field, err)
			return
		}
		var s string
		switch val := val.(type) {
		case starlark.String:
			s = c.text(field+"["+key+"]", val, "", maxTextBytes)
		case starlark.Int:
			s = val.String()
		case starlark.Bool:
			s = strings.ToLower(val.String())
		default:
			c.typeError(field+"["+key+"]", "a string, int or bool", val)
			return
		}
		if out == nil {
			out = map[string]string{}
		}
		out[key] = s
	})
	return out
}

// dict calls each with the string keys of a dict argument, in order.
func (c *call) dict(field string, v starlark.Value, each func(key string, val starlark.Value)) {
	if !given(v) {
		return
	}
	d, ok := v.(*starlark.Dict)
	if !ok {
		c.typeError(field, "a dict", v)
		return
	}
	for _, kv := range d.Items() {
		key, ok := kv[0].(starlark.String)
		if !ok {
			c.typeError(field+" key", "a string", kv[0])
			continue
		}
		each(string(key), kv[1])
	}
}
