package cluster_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/regent-ci/regent/internal/cluster"
	"github.com/regent-ci/regent/internal/config"
	"github.com/regent-ci/regent/internal/store"
)

func master(id int64, tags ...string) store.Master {
	return store.Master{ID: id, Name: fmt.Sprintf("m%d", id), State: store.MasterAlive,
		Roles: cluster.DefaultRoles, Tags: tags}
}

func pollers(n int, tags ...string) []store.ServiceSpec {
	var out []store.ServiceSpec
	for i := range n {
		out = append(out, store.ServiceSpec{Name: cluster.PollerService(fmt.Sprintf("r%02d", i)),
			Kind: cluster.KindPoller, MasterTags: tags})
	}
	return out
}

// owned returns the services as the store would list them after ps.
func owned(ps []store.Placement) []store.Service {
	var out []store.Service
	for _, p := range ps {
		sv := store.Service{Name: p.Name, Kind: p.Kind}
		if p.Owner != 0 {
			sv.OwnerID = &p.Owner
		}
		out = append(out, sv)
	}
	return out
}

func loads(ps []store.Placement) map[int64]int {
	l := map[int64]int{}
	for _, p := range ps {
		l[p.Owner]++
	}
	return l
}

func TestPlaceBalancesAndIsSticky(t *testing.T) {
	ms := []store.Master{master(1), master(2), master(3)}
	desired := pollers(10)
	ps := cluster.Place(ms, nil, desired)
	for id, n := range loads(ps) {
		if id == 0 || n > 4 || n < 3 {
			t.Fatalf("loads %v: want 3 or 4 services on each master", loads(ps))
		}
	}

	// The same inputs again move nothing.
	again := cluster.Place(ms, owned(ps), desired)
	if !slices.EqualFunc(again, ps, func(a, b store.Placement) bool { return a.Owner == b.Owner }) {
		t.Fatalf("a second round moved services:\n%v\n%v", ps, again)
	}

	// A master that dies: its services spread over the others, the rest
	// stay where they were.
	survivors := ms[:2]
	after := cluster.Place(survivors, owned(ps), desired)
	for i, p := range after {
		if ps[i].Owner != 3 && p.Owner != ps[i].Owner {
			t.Fatalf("%s moved from %d to %d though its owner lives", p.Name, ps[i].Owner, p.Owner)
		}
	}
	if l := loads(after); l[1] != 5 || l[2] != 5 {
		t.Fatalf("loads after a death %v", l)
	}
}

func TestPlaceRebalancesOntoANewMaster(t *testing.T) {
	desired := pollers(10)
	first := cluster.Place([]store.Master{master(1)}, nil, desired)
	if l := loads(first); l[1] != 10 {
		t.Fatalf("one master: %v", l)
	}
	ms := []store.Master{master(1), master(2), master(3)}
	ps := cluster.Place(ms, owned(first), desired)
	moved := 0
	for i := range ps {
		if ps[i].Owner != first[i].Owner {
			moved++
		}
	}
	if l := loads(ps); l[1] > 4 || l[2] > 4 || l[3] > 4 || moved != 6 {
		t.Fatalf("loads %v after %d moves, want at most 4 each after 6 moves", l, moved)
	}
}

func TestPlaceHonoursTagsRolesAndDraining(t *testing.T) {
	web := master(4)
	web.Roles = []string{cluster.RoleWeb}
	draining := master(5, "x")
	draining.State = store.MasterDraining
	withSource := master(6)
	withSource.ConfigSource = "/etc/regent"
	ms := []store.Master{master(1, "x"), master(2, "x", "y"), master(3), web, draining, withSource}

	desired := append(pollers(6, "x"), store.ServiceSpec{Name: "scheduler:nightly",
		Kind: cluster.KindScheduler, MasterTags: []string{"x", "y"}},
		store.ServiceSpec{Name: "scheduler:gpu", Kind: cluster.KindScheduler, MasterTags: []string{"gpu"}},
		store.ServiceSpec{Name: cluster.ConfigWatcherService, Kind: cluster.KindConfigWatcher})
	current := []store.Service{{Name: "poller:r00", OwnerID: &draining.ID}}
	for _, p := range cluster.Place(ms, current, desired) {
		var want []int64
		switch p.Name {
		case "scheduler:nightly":
			want = []int64{2}
		case "scheduler:gpu":
			want = []int64{0}
		case cluster.ConfigWatcherService:
			want = []int64{6}
		default:
			want = []int64{1, 2}
		}
		if !slices.Contains(want, p.Owner) {
			t.Errorf("%s placed on %d, want one of %v", p.Name, p.Owner, want)
		}
	}
}

func TestDesiredServices(t *testing.T) {
	st := &config.State{
		Repos: []config.Repo{
			{Name: "app", PollInterval: config.Duration(time.Minute), Masters: []string{"eu"}},
			{Name: "hooked"}, // no poll interval: webhooks only
		},
		Schedulers: []config.Scheduler{
			{Name: "nightly", Kind: config.SchedulerCron, Cron: "0 3 * * *"},
			{Name: "every-hour", Kind: config.SchedulerPeriodic, Interval: config.Duration(time.Hour)},
			{Name: "main", Kind: config.SchedulerBranch, Repo: "app"},
			{Name: "stable", Kind: config.SchedulerBranch, Repo: "app", TreeStableTimer: config.Duration(time.Minute)},
			{Name: "force", Kind: config.SchedulerForce},
		},
	}
	var names []string
	for _, s := range cluster.DesiredServices(st, []store.Master{master(1)}) {
		names = append(names, s.Name)
	}
	want := []string{"housekeeping", "poller:app", "scheduler:every-hour", "scheduler:nightly", "scheduler:stable"}
	if !slices.Equal(names, want) {
		t.Fatalf("services %v, want %v", names, want)
	}
	withSource := master(2)
	withSource.ConfigSource = "dir"
	got := cluster.DesiredServices(nil, []store.Master{master(1), withSource})
	if len(got) != 2 || got[0].Name != cluster.ConfigWatcherService || got[1].Name != cluster.HousekeepingService {
		t.Fatalf("services before any generation: %v", got)
	}
	if kind, subject := cluster.ParseService("poller:app"); kind != cluster.KindPoller || subject != "app" {
		t.Fatalf("parse: %s %s", kind, subject)
	}
}
