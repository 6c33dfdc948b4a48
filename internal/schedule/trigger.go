package schedule

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"

	"github.com/regent-ci/regent/internal/build"
	"github.com/regent-ci/regent/internal/config"
	"github.com/regent-ci/regent/internal/store"
)

// ErrNotTriggerable means a trigger step named a scheduler that is not a
// triggerable scheduler of the active generation.
var ErrNotTriggerable = errors.New("not a triggerable scheduler")

// triggeredProperties are the properties of the parent build that the
// builds it triggers inherit, so that they build the same revision.
var triggeredProperties = []string{"revision", "branch", "repository", "change_id", "category"}

// Trigger starts, for trigger step number step of build parent, one
// buildset through each triggerable scheduler named in schedulers, and
// returns them. Each child build gets the parent's revision, branch and
// repository, the scheduler's properties, props, and "parent_build" and
// "parent_builder". A buildset is unique per scheduler and trigger step,
// so a trigger retried after a lost answer starts nothing twice; the
// existing buildsets are returned.
//
// The worker side of a trigger step (the master API a worker calls) is
// expected to call Trigger, then [TriggerOutcome] until the children are
// done when the step waits. Cancelling the parent build cancels its
// children: [Service] does it within its interval.
func Trigger(ctx context.Context, st *store.Store, parent store.Build, step int,
	schedulers []string, props map[string]string) ([]store.Buildset, error) {
	_, state, err := st.ActiveState(ctx)
	if err != nil {
		return nil, fmt.Errorf("trigger from build %d: %w", parent.ID, err)
	}
	var scheds []config.Scheduler
	for _, name := range schedulers {
		sc, ok := findScheduler(state, name)
		if !ok || sc.Kind != config.SchedulerTriggerable {
			return nil, fmt.Errorf("trigger from build %d step %d: %q: %w", parent.ID, step, name, ErrNotTriggerable)
		}
		scheds = append(scheds, sc)
	}
	id := parent.ID
	var out []store.Buildset
	for _, sc := range scheds {
		p := map[string]string{}
		for _, k := range triggeredProperties {
			if v, ok := parent.Properties[k]; ok {
				p[k] = v
			}
		}
		maps.Copy(p, sc.Properties)
		maps.Copy(p, props)
		p["scheduler"] = sc.Name
		p["parent_build"] = strconv.FormatInt(parent.ID, 10)
		p["parent_builder"] = parent.Builder
		bs, _, err := st.CreateBuildset(ctx, store.BuildsetInput{
			Reason: fmt.Sprintf("triggered by %s build #%d (build %d), step %d",
				parent.Builder, parent.Number, parent.ID, step),
			Scheduler:   sc.Name,
			Properties:  p,
			Builders:    sc.Builders,
			ParentBuild: &id,
			ParentStep:  step,
		})
		if err != nil {
			return nil, fmt.Errorf("trigger %q from build %d: %w", sc.Name, parent.ID, err)
		}
		out = append(out, bs)
	}
	return out, nil
}

// findScheduler returns the scheduler of st with that name.
func findScheduler(st *config.State, name string) (config.Scheduler, bool) {
	for _, sc := range st.Schedulers {
		if sc.Name == name {
			return sc, true
		}
	}
	return config.Scheduler{}, false
}

// TriggerOutcome reports whether every build that trigger step step of
// build parent started has ended and, if so, the worst of their results:
// the result a waiting trigger step takes. A child request that was
// cancelled counts as cancelled; a finished build without result as an
// exception. children lists the requests either way.
func TriggerOutcome(ctx context.Context, st *store.Store, parent int64, step int) (
	done bool, result string, children []store.ChildRequest, err error) {
	children, err = st.TriggeredRequests(ctx, parent, step)
	if err != nil {
		return false, "", nil, err
	}
	result = build.Success
	for _, c := range children {
		switch c.State {
		case store.RequestPending, store.RequestClaimed:
			return false, "", children, nil
		case store.RequestCancelled:
			result = build.Worse(result, build.Cancelled)
		default:
			r := build.Exception
			if c.Result != nil {
				r = *c.Result
			}
			result = build.Worse(result, r)
		}
	}
	return true, result, children, nil
}
