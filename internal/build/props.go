package build

import (
	"maps"
	"strings"

	"github.com/regent-ci/regent/internal/config"
)

// Interpolation: a step's command and environment values, and a builder's
// environment values, may name build properties as
//
//	%(prop:NAME)s             the property NAME, or "" when it is unset
//	%(prop:NAME:-DEFAULT)s    the property, or DEFAULT when unset or empty
//	%%(                       a literal "%(", for text that must keep it
//
// Values are inserted as they are, without shell quoting: a property that
// comes from outside (a branch name, a pull request) is safer read from
// the environment variable REGENT_PROP_NAME that every step gets.

// Interpolate returns copies of steps and env with the properties props
// substituted where they are named; the inputs are not changed. It is
// pure: a worker calls [InterpolateStep] as each step starts, so that
// properties set by earlier steps count.
func Interpolate(steps []config.Step, env, props map[string]string) ([]config.Step, map[string]string) {
	out := make([]config.Step, len(steps))
	for i, st := range steps {
		out[i] = InterpolateStep(st, props)
	}
	return out, InterpolateEnv(env, props)
}

// InterpolateStep returns st with props substituted in its command and
// environment values. The working directory is left alone: validated when
// the configuration is applied, it must not leave the build directory
// through a property's value.
func InterpolateStep(st config.Step, props map[string]string) config.Step {
	st.Command = InterpolateString(st.Command, props)
	st.Env = InterpolateEnv(st.Env, props)
	return st
}

// InterpolateEnv returns a copy of env with props substituted in its
// values; nil stays nil.
func InterpolateEnv(env, props map[string]string) map[string]string {
	return interpolateMap(env, props)
}

func interpolateMap(m, props map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := maps.Clone(m)
	for k, v := range out {
		out[k] = InterpolateString(v, props)
	}
	return out
}

// InterpolateString substitutes the properties named in s (see
// [Interpolate]). A "%(" that does not start a well-formed reference is
// kept as it is.
func InterpolateString(s string, props map[string]string) string {
	if !strings.Contains(s, "%(") {
		return s
	}
	var b strings.Builder
	for {
		i := strings.Index(s, "%(")
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		if i > 0 && s[i-1] == '%' {
			b.WriteString(s[:i-1] + "%(")
			s = s[i+2:]
			continue
		}
		b.WriteString(s[:i])
		name, def, hasDef, rest, ok := parseRef(s[i+2:])
		if !ok {
			b.WriteString("%(")
			s = s[i+2:]
			continue
		}
		v := props[name]
		if hasDef && v == "" {
			v = def
		}
		b.WriteString(v)
		s = rest
	}
}

// parseRef reads "prop:NAME)s" or "prop:NAME:-DEFAULT)s" at the start of
// s.
func parseRef(s string) (name, def string, hasDef bool, rest string, ok bool) {
	body, ok := strings.CutPrefix(s, "prop:")
	if !ok {
		return "", "", false, "", false
	}
	end := strings.Index(body, ")s")
	if end < 0 {
		return "", "", false, "", false
	}
	ref := body[:end]
	name, def, hasDef = strings.Cut(ref, ":-")
	if name == "" || strings.ContainsAny(name, "()% \t\n") {
		return "", "", false, "", false
	}
	return name, def, hasDef, body[end+2:], true
}
