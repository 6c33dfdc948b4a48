package cluster

import (
	"slices"
	"strings"

	"github.com/regent-ci/regent/internal/config"
	"github.com/regent-ci/regent/internal/store"
)

// Roles a master may be started with.
const (
	// RoleWeb serves the web UI and the REST API.
	RoleWeb = "web"
	// RoleDispatch serves the worker API and hands builds to workers.
	RoleDispatch = "dispatch"
	// RoleServices may own clustered services.
	RoleServices = "services"
)

// DefaultRoles are the roles of a master started without any.
var DefaultRoles = []string{RoleWeb, RoleDispatch, RoleServices}

// Kinds of clustered services.
const (
	KindPoller        = "poller"
	KindScheduler     = "scheduler"
	KindConfigWatcher = "config-watcher"
	KindHousekeeping  = "housekeeping"
)

// Names of the services of which the cluster has one.
const (
	ConfigWatcherService = "config-watcher"
	HousekeepingService  = "housekeeping"
)

// PollerService names the service polling the repository repo.
func PollerService(repo string) string { return KindPoller + ":" + repo }

// SchedulerService names the service running the timed scheduler name.
func SchedulerService(name string) string { return KindScheduler + ":" + name }

// ParseService splits a service name into its kind and what it is for:
// "poller:app" gives "poller" and "app"; "housekeeping" gives
// "housekeeping" and "".
func ParseService(name string) (kind, subject string) {
	kind, subject, _ = strings.Cut(name, ":")
	return kind, subject
}

// TimedScheduler reports whether a scheduler acts on a timer of its own
// (cron, periodic, or a tree-stable timer) and so must run on exactly one
// master. Schedulers driven only by recorded changes run on every master:
// a buildset per change and scheduler is unique in the database.
func TimedScheduler(sc config.Scheduler) bool {
	switch sc.Kind {
	case config.SchedulerCron, config.SchedulerPeriodic:
		return true
	case config.SchedulerBranch, config.SchedulerAnyBranch:
		return sc.TreeStableTimer > 0
	}
	return false
}

// DesiredServices lists the clustered services that the desired state st
// (nil before any generation) and the live masters call for, by name: a
// poller per polled repository, a service per timed scheduler, the
// configuration watcher while a live master offers a source, and
// housekeeping.
func DesiredServices(st *config.State, masters []store.Master) []store.ServiceSpec {
	out := []store.ServiceSpec{{Name: HousekeepingService, Kind: KindHousekeeping}}
	if slices.ContainsFunc(masters, func(m store.Master) bool { return m.ConfigSource != "" }) {
		out = append(out, store.ServiceSpec{Name: ConfigWatcherService, Kind: KindConfigWatcher})
	}
	if st != nil {
		for _, r := range st.Repos {
			if r.PollInterval > 0 {
				out = append(out, store.ServiceSpec{Name: PollerService(r.Name), Kind: KindPoller,
					MasterTags: r.Masters})
			}
		}
		for _, sc := range st.Schedulers {
			if TimedScheduler(sc) {
				out = append(out, store.ServiceSpec{Name: SchedulerService(sc.Name),
					Kind: KindScheduler, MasterTags: sc.Masters})
			}
		}
	}
	slices.SortFunc(out, func(a, b store.ServiceSpec) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Eligible reports whether master m may own the service spec: it is alive
// (not draining), has the services role, carries every tag the service is
// pinned to, and, for the configuration watcher, offers a source.
func Eligible(m store.Master, spec store.ServiceSpec) bool {
	return m.State == store.MasterAlive && m.HasRole(RoleServices) && m.HasTags(spec.MasterTags) &&
		(spec.Kind != KindConfigWatcher || m.ConfigSource != "")
}

// Place decides who owns each service in desired, given the live masters
// and the services' current owners:
//
//   - a service stays with its owner while the owner is eligible (sticky);
//   - a service without an eligible owner goes to the eligible master
//     owning the fewest services;
//   - then, while some master owns two services more than another master
//     eligible for one of them, that service moves to the other (balanced);
//   - a service no master is eligible for has no owner.
//
// Ties go to the master with the lowest incarnation id, so that the
// outcome depends only on the inputs.
func Place(masters []store.Master, current []store.Service, desired []store.ServiceSpec) []store.Placement {
	masters = slices.SortedFunc(slices.Values(masters), func(a, b store.Master) int {
		return int(a.ID - b.ID)
	})
	owners := map[string]int64{}
	for _, sv := range current {
		if sv.OwnerID != nil {
			owners[sv.Name] = *sv.OwnerID
		}
	}
	load := map[int64]int{}
	byID := map[int64]store.Master{}
	for _, m := range masters {
		byID[m.ID] = m
	}
	out := make([]store.Placement, len(desired))
	for i, spec := range desired {
		out[i].ServiceSpec = spec
		if m, ok := byID[owners[spec.Name]]; ok && Eligible(m, spec) {
			out[i].Owner = m.ID
			load[m.ID]++
		}
	}
	leastLoaded := func(spec store.ServiceSpec) (int64, bool) {
		best, found := int64(0), false
		for _, m := range masters {
			if Eligible(m, spec) && (!found || load[m.ID] < load[best]) {
				best, found = m.ID, true
			}
		}
		return best, found
	}
	for i := range out {
		if out[i].Owner != 0 {
			continue
		}
		if id, ok := leastLoaded(out[i].ServiceSpec); ok {
			out[i].Owner = id
			load[id]++
		}
	}
	// Each move lowers the sum of the squared loads, so this ends.
	for moved := true; moved; {
		moved = false
		for i := len(out) - 1; i >= 0; i-- {
			from := out[i].Owner
			to, ok := leastLoaded(out[i].ServiceSpec)
			if from == 0 || !ok || load[from] <= load[to]+1 {
				continue
			}
			out[i].Owner = to
			load[from]--
			load[to]++
			moved = true
		}
	}
	return out
}
