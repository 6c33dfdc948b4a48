package schedule

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/regent-ci/regent/internal/config"
	"github.com/regent-ci/regent/internal/gitref"
	"github.com/regent-ci/regent/internal/store"
)

// ErrInvalidForce means a forced build was refused: no force scheduler
// lists the builder, or the properties do not fit its parameters. The
// error's text says what to change.
var ErrInvalidForce = errors.New("invalid force request")

// ForceProperties checks the properties of a forced build of builder
// against the force schedulers of st that list it and returns the
// properties the build gets, with "scheduler" naming the scheduler that
// accepted them.
//
// A builder that no force scheduler lists, and a force scheduler without
// parameters, accept any properties. A force scheduler with
// parameters accepts only those: an int must be a whole number, a bool
// true or false, a choice one of its choices; a parameter not given takes
// its default, unless it is required. When several force schedulers list
// the builder, the first (by name) that accepts the properties wins, and
// when none does the error is the first one's.
func ForceProperties(st *config.State, builder string, given map[string]string) (map[string]string, error) {
	props, err := forceProperties(st, builder, given)
	if err != nil {
		return nil, err
	}
	// A forced build's revision and branch are checked out by git on a
	// worker, which must not take them for options or expressions.
	if rev := props["revision"]; rev != "" {
		if why := gitref.RevisionProblem(rev); why != "" {
			return nil, fmt.Errorf("%w: revision %q: %s", ErrInvalidForce, rev, why)
		}
	}
	if branch := strings.TrimPrefix(props["branch"], "refs/heads/"); props["branch"] != "" {
		if why := gitref.BranchProblem(branch); why != "" {
			return nil, fmt.Errorf("%w: branch %q: %s", ErrInvalidForce, props["branch"], why)
		}
	}
	return props, nil
}

func forceProperties(st *config.State, builder string, given map[string]string) (map[string]string, error) {
	var first error
	for _, sc := range st.Schedulers {
		if sc.Kind != config.SchedulerForce || !slices.Contains(sc.Builders, builder) {
			continue
		}
		props, err := forceParameters(sc, given)
		if err == nil {
			props["scheduler"] = sc.Name
			return props, nil
		}
		if first == nil {
			first = err
		}
	}
	if first == nil {
		// No force scheduler speaks for the builder: nothing to check.
		return maps.Clone(given), nil
	}
	return nil, first
}

// forceParameters checks given against the parameters of the force
// scheduler sc and fills in defaults.
func forceParameters(sc config.Scheduler, given map[string]string) (map[string]string, error) {
	props := maps.Clone(given)
	if props == nil {
		props = map[string]string{}
	}
	if len(sc.Parameters) == 0 {
		return props, nil
	}
	known := map[string]config.ForceParameter{}
	var names []string
	for _, p := range sc.Parameters {
		known[p.Name] = p
		names = append(names, p.Name)
	}
	for _, k := range slices.Sorted(maps.Keys(given)) {
		if _, ok := known[k]; !ok {
			return nil, fmt.Errorf("%w: scheduler.force %q has no parameter %q; it takes %s",
				ErrInvalidForce, sc.Name, k, strings.Join(names, ", "))
		}
	}
	for _, p := range sc.Parameters {
		v, ok := given[p.Name]
		if !ok {
			if p.Required {
				return nil, fmt.Errorf("%w: scheduler.force %q: parameter %q is required",
					ErrInvalidForce, sc.Name, p.Name)
			}
			props[p.Name] = p.Default
			continue
		}
		canon, err := paramValue(p, v)
		if err != nil {
			return nil, fmt.Errorf("%w: scheduler.force %q: parameter %q: %v", ErrInvalidForce, sc.Name, p.Name, err)
		}
		props[p.Name] = canon
	}
	return props, nil
}

// paramValue checks v against the kind of p and returns it canonically.
func paramValue(p config.ForceParameter, v string) (string, error) {
	switch p.Kind {
	case config.ParamInt:
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return "", fmt.Errorf("%q is not a whole number", v)
		}
		return strconv.FormatInt(n, 10), nil
	case config.ParamBool:
		switch strings.ToLower(strings.TrimSpace(v)) {
		case "true", "1", "on", "yes":
			return "true", nil
		case "false", "0", "off", "no", "":
			return "false", nil
		}
		return "", fmt.Errorf("%q is not true or false", v)
	case config.ParamChoice:
		if !slices.Contains(p.Choices, v) {
			return "", fmt.Errorf("%q is not one of %s", v, strings.Join(p.Choices, ", "))
		}
	}
	return v, nil
}

// Force creates a buildset for one builder on a user's request, with the
// given properties; the buildset's scheduler is props["scheduler"] as
// [ForceProperties] sets it, or "force". The caller checks the
// properties first.
func Force(ctx context.Context, st *store.Store, builder, reason string,
	props map[string]string) (store.Buildset, error) {
	if reason == "" {
		reason = "forced"
	}
	scheduler := props["scheduler"]
	if scheduler == "" {
		scheduler = "force"
	}
	bs, _, err := st.CreateBuildset(ctx, store.BuildsetInput{
		Reason:     reason,
		Scheduler:  scheduler,
		Properties: props,
		Builders:   []string{builder},
	})
	return bs, err
}

// ForceForm returns the parameters the force form of builder shows: those
// of the first force scheduler (by name) that lists it, none when no
// force scheduler does or the first has no parameters.
func ForceForm(st *config.State, builder string) []config.ForceParameter {
	for _, sc := range st.Schedulers {
		if sc.Kind == config.SchedulerForce && slices.Contains(sc.Builders, builder) {
			return sc.Parameters
		}
	}
	return nil
}
