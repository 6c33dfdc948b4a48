package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/regent-ci/regent/internal/cluster"
	"github.com/regent-ci/regent/internal/store"
	"github.com/regent-ci/regent/internal/testutil/pgtest"
	"github.com/regent-ci/regent/internal/testutil/proxy"
)

// testWriter sends log lines to the test's log, shown when it fails.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func testLogger(t testing.TB, name string) *slog.Logger {
	if _, ok := t.(*testing.B); ok {
		return slog.New(slog.DiscardHandler) // a benchmark prints every line it logs
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})).
		With("node", name)
}

// holders returns the nodes whose supervisor holds the lease.
func holders(nodes ...*node) []*node {
	var out []*node
	for _, n := range nodes {
		if n.supervising() {
			out = append(out, n)
		}
	}
	return out
}

func TestOneSupervisorAndFailoverOnStop(t *testing.T) {
	t.Parallel()
	dsn := pgtest.URL(t)
	a, b, c := startNode(t, dsn, "a", nodeOptions{}), startNode(t, dsn, "b", nodeOptions{}),
		startNode(t, dsn, "c", nodeOptions{})
	nodes := []*node{a, b, c}
	waitFor(t, 5*time.Second, "a supervisor", func() bool { return len(holders(nodes...)) == 1 })

	// Over a few rounds, never two at once, and always the lease's holder.
	for range 40 {
		hs := holders(nodes...)
		if len(hs) > 1 {
			t.Fatalf("%d supervisors at once", len(hs))
		}
		time.Sleep(25 * time.Millisecond)
	}
	old := holders(nodes...)[0]
	stored, err := a.st.CurrentLease(context.Background(), store.SupervisorLease)
	if err != nil || stored.Holder != old.member.Incarnation() {
		t.Fatalf("lease %+v (%v), but %s believes it supervises", stored, err, old.name)
	}

	start := time.Now()
	old.stop()
	var rest []*node
	for _, n := range nodes {
		if n != old {
			rest = append(rest, n)
		}
	}
	waitFor(t, 5*time.Second, "a new supervisor", func() bool { return len(holders(rest...)) == 1 })
	t.Logf("supervisor failover after a clean stop: %s", time.Since(start).Round(time.Millisecond))
	if l, _ := a.st.CurrentLease(context.Background(), store.SupervisorLease); l.Token <= stored.Token {
		t.Fatalf("new lease %+v does not have a higher token than %+v", l, stored)
	}
}

// sessionPID returns the backend of the session holding incarnation id's
// lock.
func sessionPID(t *testing.T, st *store.Store, id int64) int {
	t.Helper()
	var pid int
	err := st.DB().QueryRowContext(context.Background(), fmt.Sprintf(`SELECT pid FROM pg_locks
		WHERE locktype = 'advisory' AND classid = %d AND objid = %d AND objsubid = 2 AND granted
		AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
		store.SessionLockClass, id)).Scan(&pid)
	if err != nil {
		t.Fatalf("session of incarnation %d: %v", id, err)
	}
	return pid
}

func TestSupervisorFailoverWhenItsSessionIsKilled(t *testing.T) {
	t.Parallel()
	dsn := pgtest.URL(t)
	a, b, c := startNode(t, dsn, "a", nodeOptions{}), startNode(t, dsn, "b", nodeOptions{}),
		startNode(t, dsn, "c", nodeOptions{})
	nodes := []*node{a, b, c}
	applyRepos(t, a.st, nil, "r1", "r2", "r3", "r4", "r5")
	waitFor(t, 5*time.Second, "every service owned", func() bool {
		for _, owner := range owners(t, a.st) {
			if owner == "" {
				return false
			}
		}
		return len(holders(nodes...)) == 1
	})
	old := holders(nodes...)[0]
	oldID := old.member.Incarnation()
	var orphans []string
	for svc, owner := range owners(t, a.st) {
		if owner == old.name {
			orphans = append(orphans, svc)
		}
	}
	watcher := a
	if watcher == old {
		watcher = b
	}

	// A crash ends the session; the supervisor sees it at its next round.
	pid := sessionPID(t, watcher.st, oldID)
	start := time.Now()
	if _, err := watcher.st.DB().Exec(`SELECT pg_terminate_backend($1)`, pid); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the lease and the services to leave the killed session", func() bool {
		l, err := watcher.st.CurrentLease(context.Background(), store.SupervisorLease)
		if err != nil || l.Holder == oldID || l.Holder == 0 {
			return false
		}
		svs, err := watcher.st.Services(context.Background(), false)
		if err != nil {
			return false
		}
		for _, sv := range svs {
			if sv.OwnerID == nil || *sv.OwnerID == oldID {
				return false
			}
		}
		return true
	})
	elapsed := time.Since(start)
	t.Logf("crash failover (supervisor and %d services): %s", len(orphans), elapsed.Round(time.Millisecond))
	if elapsed > 3*time.Second {
		t.Errorf("crash failover took %s; the bound is 1s", elapsed)
	}

	// The master whose session was killed fenced itself and came back as
	// a new incarnation.
	waitFor(t, 5*time.Second, "the killed master to rejoin", func() bool {
		id := old.member.Incarnation()
		return id != 0 && id != oldID
	})
	if len(old.fenced()) != 1 {
		t.Fatalf("%s fenced itself %d times, want once", old.name, len(old.fenced()))
	}
}

func TestTenServicesOverThreeMasters(t *testing.T) {
	t.Parallel()
	dsn := pgtest.URL(t)
	a := startNode(t, dsn, "a", nodeOptions{})
	var repos []string
	for i := range 10 {
		repos = append(repos, fmt.Sprintf("repo%d", i))
	}
	applyRepos(t, a.st, nil, repos...)
	waitFor(t, 5*time.Second, "a to own every service", func() bool { return len(a.member.Owned()) == 11 })

	// Masters that join later take their share.
	b, c := startNode(t, dsn, "b", nodeOptions{}), startNode(t, dsn, "c", nodeOptions{})
	waitFor(t, 5*time.Second, "a balanced cluster", func() bool {
		la, lb, lc := len(a.member.Owned()), len(b.member.Owned()), len(c.member.Owned())
		return la+lb+lc == 11 && max(la, lb, lc) <= 4
	})
	count := map[string]int{}
	for svc, owner := range owners(t, a.st) {
		if owner == "" {
			t.Fatalf("%s has no owner", svc)
		}
		count[owner]++
	}
	if count["a"] > 4 || count["b"] > 4 || count["c"] > 4 {
		t.Fatalf("services per master %v: want at most 4", count)
	}

	m := metrics(t, b)
	if m["regent_masters_live"] != 3 || m["regent_services_owned"] != float64(count["b"]) ||
		m["regent_service_moves_total"] < 11 || m["regent_services_unowned"] != 0 ||
		m["regent_supervisor_changes_total"] < 1 || m["regent_heartbeat_lag_seconds"] > 5 {
		t.Fatalf("metrics of b: %v", m)
	}
}

// metrics gathers the cluster metrics of node n, by name.
func metrics(t *testing.T, n *node) map[string]float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(cluster.NewCollector(n.member, n.sup))
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			out[f.GetName()] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	return out
}

func TestTagsAreHonoured(t *testing.T) {
	t.Parallel()
	dsn := pgtest.URL(t)
	eu := startNode(t, dsn, "eu", nodeOptions{tags: []string{"eu", "linux"}})
	us := startNode(t, dsn, "us", nodeOptions{tags: []string{"us", "linux"}})
	startNode(t, dsn, "bare", nodeOptions{})

	applyTagged(t, eu.st, map[string][]string{
		"eu0": {"eu"}, "eu1": {"eu"}, "eu2": {"eu"}, "eu3": {"eu", "linux"},
		"us0": {"us"}, "us1": {"us"}, "us2": {"us", "linux"}, "us3": {"us"},
		"gpu": {"gpu"}, "any": nil,
	})
	waitFor(t, 5*time.Second, "pinned services placed", func() bool {
		o := owners(t, us.st)
		return o["poller:eu0"] != "" && o["poller:us0"] != "" && o["poller:any"] != ""
	})
	for svc, owner := range owners(t, us.st) {
		_, repo := cluster.ParseService(svc)
		switch {
		case repo == "gpu" && owner != "":
			t.Errorf("%s owned by %s, but no master has the tag gpu", svc, owner)
		case strings.HasPrefix(repo, "eu") && owner != "eu", strings.HasPrefix(repo, "us") && owner != "us":
			t.Errorf("%s owned by %q", svc, owner)
		}
	}
}

func TestHungMasterIsReplacedAndFenced(t *testing.T) {
	t.Parallel()
	const ttl = 3 * time.Second
	dsn := pgtest.URL(t)
	a := startNode(t, dsn, "a", nodeOptions{ttl: ttl})
	b := startNode(t, dsn, "b", nodeOptions{ttl: ttl})
	px := proxy.Start(t, dbHost(t, dsn))
	hung := startNode(t, viaProxy(t, dsn, px.Addr()), "hung", nodeOptions{ttl: ttl})
	applyRepos(t, a.st, nil, "r1", "r2", "r3", "r4", "r5")
	waitFor(t, 5*time.Second, "the hung-to-be master to own services", func() bool {
		return len(hung.member.Owned()) > 0 && len(a.member.Owned()) > 0 && len(b.member.Owned()) > 0
	})
	held := hung.member.Owned()
	oldID := hung.member.Incarnation()

	// Cut off: its heartbeat stops reaching the database, though its
	// session stays open, as in a partition or a pause.
	px.Blackhole()
	start := time.Now()
	waitFor(t, ttl+5*time.Second, "the services of the cut-off master to move", func() bool {
		o := owners(t, a.st)
		for _, f := range held {
			if o[f.Service] == "" || o[f.Service] == "hung" {
				return false
			}
		}
		return true
	})
	moved := time.Since(start)
	t.Logf("hang failover with time-to-live %s: %s", ttl, moved.Round(time.Millisecond))
	if moved > ttl+2*time.Second {
		t.Errorf("services moved after %s; the bound is the time-to-live plus 1s", moved)
	}
	fences := hung.fenced()
	if len(fences) == 0 {
		t.Fatal("the cut-off master did not stop its services")
	}
	if !fences[0].Before(start.Add(moved)) {
		t.Errorf("the cut-off master fenced itself %s after the cut, after its services moved (%s)",
			fences[0].Sub(start), moved)
	}

	// Back on the network: whatever it still tries to write is refused,
	// and it comes back as a new incarnation.
	px.Pass()
	for _, f := range held {
		err := hung.st.ServiceSucceeded(context.Background(), f)
		if !errors.Is(err, store.ErrFenced) {
			t.Errorf("write of %s after the cut: %v, want ErrFenced", f, err)
		}
	}
	waitFor(t, 10*time.Second, "the cut-off master to rejoin", func() bool {
		id := hung.member.Incarnation()
		return id != 0 && id != oldID
	})
}

func TestDrainMovesServicesAway(t *testing.T) {
	t.Parallel()
	dsn := pgtest.URL(t)
	a, b := startNode(t, dsn, "a", nodeOptions{}), startNode(t, dsn, "b", nodeOptions{})
	applyRepos(t, a.st, nil, "r1", "r2", "r3")
	waitFor(t, 5*time.Second, "services on both", func() bool {
		return len(a.member.Owned()) > 0 && len(b.member.Owned()) > 0
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.member.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	a.stop()
	if n := len(b.member.Owned()); n != 4 {
		waitFor(t, 2*time.Second, "b to own all 4 services", func() bool { return len(b.member.Owned()) == 4 })
	}
	all, _ := b.st.Masters(context.Background(), true)
	for _, m := range all {
		if m.Name == "a" && m.State != store.MasterStopped {
			t.Fatalf("a after drain and stop: %+v", m)
		}
	}
}

func TestNameInUseRefusesToStart(t *testing.T) {
	t.Parallel()
	dsn := pgtest.URL(t)
	startNode(t, dsn, "a", nodeOptions{})
	_, err := tryStartNode(t, dsn, "a", nodeOptions{})
	if !errors.Is(err, store.ErrNameTaken) {
		t.Fatalf("second master named a: %v, want ErrNameTaken", err)
	}
}

// A single master on SQLite owns every service, and the same fencing
// applies.
func TestSingleMasterOnSQLite(t *testing.T) {
	t.Parallel()
	dsn := filepath.Join(t.TempDir(), "regent.db")
	a := startNode(t, dsn, "solo", nodeOptions{ttl: 3 * time.Second})
	applyRepos(t, a.st, nil, "r1", "r2")
	waitFor(t, 5*time.Second, "every service owned", func() bool { return len(a.member.Owned()) == 3 })
	f, ok := a.member.Fence(cluster.PollerService("r1"))
	if !ok {
		t.Fatal("no fence for poller:r1")
	}
	if err := a.st.ServiceSucceeded(context.Background(), f); err != nil {
		t.Fatal(err)
	}
	if m := metrics(t, a); m["regent_masters_live"] != 1 || m["regent_supervisor"] != 1 {
		t.Fatalf("metrics of the single master: %v", m)
	}
	applyRepos(t, a.st, nil, "r2")
	waitFor(t, 5*time.Second, "poller:r1 to be retired", func() bool {
		_, ok := a.member.Fence(cluster.PollerService("r1"))
		return !ok
	})
	if err := a.st.ServiceSucceeded(context.Background(), f); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("write of a retired service: %v", err)
	}
}
