package schedule

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/regent-ci/regent/internal/build"
	"github.com/regent-ci/regent/internal/config"
	"github.com/regent-ci/regent/internal/store"
)

// dependentBatch is how many buildsets a dependent scheduler reads at a
// time.
const dependentBatch = 200

// runDependent starts the builders of a dependent scheduler for each
// buildset whose requests for every upstream builder ended in success (or
// warnings), with that buildset's properties, so on the same revision. It
// keeps its position at the oldest buildset it has not decided about: one
// whose upstream requests have not all ended. A buildset without a request
// for every upstream builder is not its business. The dependent buildset
// is unique per scheduler and upstream buildset, so masters deciding at
// once start it once.
func (s *Service) runDependent(ctx context.Context, sc config.Scheduler) error {
	pos, ok, err := s.cfg.Store.SchedulerPosition(ctx, sc.Name, store.UpstreamItem)
	if err != nil {
		return err
	}
	if !ok {
		// A new dependent scheduler starts from now, not from history.
		newest, err := s.cfg.Store.NewestBuildset(ctx)
		if err != nil {
			return err
		}
		return s.cfg.Store.SetSchedulerPosition(ctx, sc.Name, store.UpstreamItem, newest)
	}
	sets, err := s.cfg.Store.BuildsetOutcomes(ctx, pos, dependentBatch)
	if err != nil {
		return err
	}
	decidedTo := pos
	undecided := false
	for _, bs := range sets {
		decided, ok := upstreamOutcome(sc, bs)
		if decided && ok {
			if err := s.startDependent(ctx, sc, bs.Buildset); err != nil {
				return err
			}
		}
		if !decided {
			undecided = true
		}
		if !undecided {
			decidedTo = bs.ID
		}
	}
	if decidedTo > pos {
		return s.cfg.Store.SetSchedulerPosition(ctx, sc.Name, store.UpstreamItem, decidedTo)
	}
	return nil
}

// upstreamOutcome says whether every upstream request of bs has ended
// (decided), and if so whether they all passed. A buildset lacking an
// upstream builder, or made by sc itself, is decided and did not pass.
func upstreamOutcome(sc config.Scheduler, bs store.BuildsetOutcome) (decided, passed bool) {
	if bs.Scheduler == sc.Name {
		return true, false
	}
	seen := map[string]bool{}
	passed = true
	for _, o := range bs.Outcomes {
		if !slices.Contains(sc.Upstream, o.Builder) {
			continue
		}
		seen[o.Builder] = true
		switch o.State {
		case store.RequestPending, store.RequestClaimed:
			return false, false
		case store.RequestComplete:
			passed = passed && (o.Result == build.Success || o.Result == build.Warnings)
		default:
			passed = false
		}
	}
	return true, passed && len(seen) == len(sc.Upstream)
}

// startDependent creates the dependent buildset of upstream.
func (s *Service) startDependent(ctx context.Context, sc config.Scheduler, upstream store.Buildset) error {
	props := maps.Clone(upstream.Properties)
	if props == nil {
		props = map[string]string{}
	}
	maps.Copy(props, sc.Properties)
	props["scheduler"] = sc.Name
	id := upstream.ID
	bs, created, err := s.cfg.Store.CreateBuildset(ctx, store.BuildsetInput{
		Reason:           fmt.Sprintf("scheduler %s: %v succeeded in buildset %d", sc.Name, sc.Upstream, upstream.ID),
		Scheduler:        sc.Name,
		Properties:       props,
		Builders:         sc.Builders,
		UpstreamBuildset: &id,
	})
	if err != nil {
		return err
	}
	if created {
		s.log.Info("buildset created", "buildset", bs.ID, "scheduler", sc.Name, "upstream", upstream.ID)
		s.cfg.Requests.Notify()
	}
	return nil
}
