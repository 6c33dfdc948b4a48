package store_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/regent-ci/regent/internal/store"
	"github.com/regent-ci/regent/internal/testutil/pgtest"
)

// member is a master incarnation joined for a test, with, on PostgreSQL,
// the session that holds its lock.
type member struct {
	store.Master
	session *pgx.Conn
}

// endSession ends the member's database session, as a crash would, and
// waits for the server to see it gone.
func (m *member) endSession(t *testing.T, s *store.Store) {
	t.Helper()
	if m.session == nil {
		return
	}
	ctx := context.Background()
	pid := m.session.PgConn().PID()
	m.session.Close(ctx)
	m.session = nil
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		err := s.DB().QueryRowContext(ctx, `SELECT count(*) FROM pg_stat_activity WHERE pid = $1`, pid).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("session %d still open 10s after closing it", pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// join joins a master named name as a real master would: on PostgreSQL it
// reserves an id and takes the session lock before the row exists.
func join(t *testing.T, s *store.Store, name string, tags ...string) *member {
	t.Helper()
	m, err := tryJoin(t, s, store.MasterInfo{Name: name, Host: "h-" + name,
		Roles: []string{"services"}, Tags: tags}, time.Minute)
	if err != nil {
		t.Fatalf("join %s: %v", name, err)
	}
	return m
}

func tryJoin(t *testing.T, s *store.Store, in store.MasterInfo, ttl time.Duration) (*member, error) {
	t.Helper()
	ctx := context.Background()
	m := &member{}
	if s.Dialect() == "postgres" {
		id, err := s.NewMasterID(ctx)
		if err != nil {
			t.Fatal(err)
		}
		m.session, err = s.SessionConn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.endSession(t, s) })
		if _, err := m.session.Exec(ctx, `SELECT pg_advisory_lock($1, $2)`,
			int32(store.SessionLockClass), store.SessionLockKey(id)); err != nil {
			t.Fatal(err)
		}
		in.ID = id
	}
	var err error
	m.Master, err = s.JoinMaster(ctx, in, ttl)
	return m, err
}

func masterByID(t *testing.T, s *store.Store, id int64) store.Master {
	t.Helper()
	all, err := s.Masters(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range all {
		if m.ID == id {
			return m
		}
	}
	t.Fatalf("master %d not found", id)
	return store.Master{}
}

func serviceByName(t *testing.T, s *store.Store, name string) store.Service {
	t.Helper()
	all, err := s.Services(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	for _, sv := range all {
		if sv.Name == name {
			return sv
		}
	}
	t.Fatalf("service %s not found", name)
	return store.Service{}
}

func TestJoinHeartbeatAndStop(t *testing.T) {
	eachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		a := join(t, s, "a", "x", "y")
		if a.State != store.MasterAlive || a.Host != "h-a" || !a.HasTags([]string{"y", "x"}) || a.HasTags([]string{"z"}) {
			t.Fatalf("joined %+v", a.Master)
		}
		before := a.LastSeen
		time.Sleep(5 * time.Millisecond)
		owned, err := s.Heartbeat(ctx, a.ID)
		if err != nil || len(owned) != 0 {
			t.Fatalf("heartbeat: %v %v", owned, err)
		}
		if seen := masterByID(t, s, a.ID).LastSeen; !seen.After(before) {
			t.Fatalf("last seen %v did not move from %v", seen, before)
		}

		if err := s.DrainMaster(ctx, a.ID); err != nil {
			t.Fatal(err)
		}
		if st := masterByID(t, s, a.ID).State; st != store.MasterDraining {
			t.Fatalf("state %s after drain", st)
		}
		if err := s.EndMaster(ctx, a.ID, store.MasterStopped, "shut down"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Heartbeat(ctx, a.ID); !errors.Is(err, store.ErrMasterGone) {
			t.Fatalf("heartbeat after stop: %v, want ErrMasterGone", err)
		}
		live, _ := s.Masters(ctx, false)
		if len(live) != 0 {
			t.Fatalf("live masters after stop: %+v", live)
		}
		if m := masterByID(t, s, a.ID); m.State != store.MasterStopped || m.EndedAt == nil || m.Reason != "shut down" {
			t.Fatalf("stopped master %+v", m)
		}
		// The name is free again.
		join(t, s, "a")
	})
}

func TestJoinRefusesTheNameOfALiveMaster(t *testing.T) {
	eachStore(t, func(t *testing.T, s *store.Store) {
		first := join(t, s, "a")
		_, err := tryJoin(t, s, store.MasterInfo{Name: "a"}, time.Minute)
		if !errors.Is(err, store.ErrNameTaken) || !strings.Contains(err.Error(), "--name") {
			t.Fatalf("second join: %v, want ErrNameTaken saying what to do", err)
		}

		// Once silent for longer than the time-to-live, it is dead and the
		// name is free.
		time.Sleep(30 * time.Millisecond)
		second, err := tryJoin(t, s, store.MasterInfo{Name: "a"}, 20*time.Millisecond)
		if err != nil {
			t.Fatalf("join after expiry: %v", err)
		}
		if m := masterByID(t, s, first.ID); m.State != store.MasterDead || !strings.Contains(m.Reason, "no heartbeat") {
			t.Fatalf("expired master %+v", m)
		}

		// A process rejoining replaces its own previous incarnation.
		third, err := tryJoin(t, s, store.MasterInfo{Name: "a", Replaces: second.ID}, time.Minute)
		if err != nil {
			t.Fatalf("rejoin replacing %d: %v", second.ID, err)
		}
		if m := masterByID(t, s, second.ID); m.State != store.MasterDead || !strings.Contains(m.Reason, "replaced") {
			t.Fatalf("replaced master %+v", m)
		}
		if third.ID == second.ID {
			t.Fatal("rejoin reused the incarnation id")
		}
	})
}

func TestJoinAfterSessionEndedNeedsNoWait(t *testing.T) {
	s := pgStore(t)
	a := join(t, s, "a")
	a.endSession(t, s)
	if _, err := tryJoin(t, s, store.MasterInfo{Name: "a"}, time.Minute); err != nil {
		t.Fatalf("join after the session ended: %v", err)
	}
	if m := masterByID(t, s, a.ID); m.State != store.MasterDead || m.Reason != "database session ended" {
		t.Fatalf("crashed master %+v", m)
	}
}

func TestSupervisorLease(t *testing.T) {
	eachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		a, b := join(t, s, "a"), join(t, s, "b")
		la, err := s.AcquireLease(ctx, store.SupervisorLease, a.ID, time.Minute)
		if err != nil || la.Holder != a.ID || la.Token != 1 {
			t.Fatalf("a acquires: %+v %v", la, err)
		}
		if l, err := s.AcquireLease(ctx, store.SupervisorLease, b.ID, time.Minute); !errors.Is(err, store.ErrLeaseHeld) || l.Holder != a.ID {
			t.Fatalf("b acquires a held lease: %+v %v", l, err)
		}
		if l, err := s.AcquireLease(ctx, store.SupervisorLease, a.ID, time.Minute); err != nil || l.Token != 1 {
			t.Fatalf("a renews: %+v %v, want the same token", l, err)
		}
		if all, _ := s.Masters(ctx, false); !all[0].Supervisor || all[1].Supervisor {
			t.Fatalf("masters %+v: want a shown as supervisor", all)
		}

		// An expired lease is free; the old holder's rounds are fenced.
		if _, err := s.Heartbeat(ctx, a.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := s.AcquireLease(ctx, store.SupervisorLease, a.ID, 10*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
		lb, err := s.AcquireLease(ctx, store.SupervisorLease, b.ID, time.Minute)
		if err != nil || lb.Holder != b.ID || lb.Token != 2 {
			t.Fatalf("b takes the expired lease: %+v %v", lb, err)
		}
		_, err = s.Supervise(ctx, la, time.Minute, func(store.ClusterView) []store.Placement { return nil })
		if !errors.Is(err, store.ErrFenced) {
			t.Fatalf("round of the old holder: %v, want ErrFenced", err)
		}

		// A holder that stops releases it at once.
		if err := s.EndMaster(ctx, b.ID, store.MasterStopped, "stop"); err != nil {
			t.Fatal(err)
		}
		if l, err := s.AcquireLease(ctx, store.SupervisorLease, a.ID, time.Minute); err != nil || l.Token != 3 {
			t.Fatalf("a after b stopped: %+v %v", l, err)
		}

		// A draining master keeps a lease it holds but takes none.
		c := join(t, s, "c")
		if err := s.DrainMaster(ctx, c.ID); err != nil {
			t.Fatal(err)
		}
		if err := s.EndMaster(ctx, a.ID, store.MasterStopped, "stop"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.AcquireLease(ctx, store.SupervisorLease, c.ID, time.Minute); !errors.Is(err, store.ErrLeaseHeld) {
			t.Fatalf("draining master acquires: %v", err)
		}
	})
}

func TestSupervisorLeaseFreedWhenTheHolderSessionEnds(t *testing.T) {
	s := pgStore(t)
	ctx := context.Background()
	a, b := join(t, s, "a"), join(t, s, "b")
	if _, err := s.AcquireLease(ctx, store.SupervisorLease, a.ID, time.Minute); err != nil {
		t.Fatal(err)
	}
	a.endSession(t, s)
	l, err := s.AcquireLease(ctx, store.SupervisorLease, b.ID, time.Minute)
	if err != nil || l.Holder != b.ID {
		t.Fatalf("b after a's session ended: %+v %v", l, err)
	}
}

// place returns a plan that puts each named service on the given master.
func place(owners map[string]int64) func(store.ClusterView) []store.Placement {
	return func(store.ClusterView) []store.Placement {
		var ps []store.Placement
		for name, owner := range owners {
			ps = append(ps, store.Placement{ServiceSpec: store.ServiceSpec{Name: name,
				Kind: strings.SplitN(name, ":", 2)[0], MasterTags: []string{"x"}}, Owner: owner})
		}
		return ps
	}
}

func TestSuperviseMovesServicesAndFencesOldOwners(t *testing.T) {
	eachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		a, b := join(t, s, "a", "x"), join(t, s, "b", "x")
		lease, err := s.AcquireLease(ctx, store.SupervisorLease, a.ID, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		supervise := func(owners map[string]int64) store.SuperviseResult {
			t.Helper()
			res, err := s.Supervise(ctx, lease, time.Minute, place(owners))
			if err != nil {
				t.Fatalf("supervise: %v", err)
			}
			return res
		}

		res := supervise(map[string]int64{"poller:r1": a.ID, "housekeeping": b.ID, "poller:r2": 0})
		if len(res.Moves) != 2 || len(res.Dead) != 0 {
			t.Fatalf("first round %+v", res)
		}
		owned, err := s.Heartbeat(ctx, a.ID)
		if err != nil || len(owned) != 1 || owned[0] != (store.Fence{Service: "poller:r1", Token: 1}) {
			t.Fatalf("a owns %v (%v)", owned, err)
		}
		old := owned[0]
		if err := s.ServiceSucceeded(ctx, old); err != nil {
			t.Fatalf("owner's write refused: %v", err)
		}
		if err := s.ServiceFailed(ctx, old, "fetch failed"); err != nil {
			t.Fatal(err)
		}
		sv := serviceByName(t, s, "poller:r1")
		if sv.Owner == nil || *sv.Owner != "a" || sv.LastSuccess == nil || sv.LastError != "fetch failed" ||
			sv.LastErrorAt == nil || sv.OwnedSince == nil || sv.Kind != "poller" || sv.MasterTags[0] != "x" {
			t.Fatalf("service %+v", sv)
		}
		if unowned := serviceByName(t, s, "poller:r2"); unowned.Owner != nil || unowned.Token != 0 {
			t.Fatalf("unowned service %+v", unowned)
		}

		// Moving the service gives it a new token; the old one is refused.
		res = supervise(map[string]int64{"poller:r1": b.ID, "housekeeping": b.ID, "poller:r2": 0})
		if len(res.Moves) != 1 || res.Moves[0] != (store.ServiceMove{Service: "poller:r1", From: a.ID,
			To: b.ID, FromName: "a", ToName: "b", Token: 2}) {
			t.Fatalf("moves %+v", res.Moves)
		}
		if err := s.ServiceSucceeded(ctx, old); !errors.Is(err, store.ErrFenced) {
			t.Fatalf("replaced owner's write: %v, want ErrFenced", err)
		}
		if err := s.ServiceFailed(ctx, old, "late"); !errors.Is(err, store.ErrFenced) {
			t.Fatalf("replaced owner's error report: %v, want ErrFenced", err)
		}
		if err := s.ServiceSucceeded(ctx, store.Fence{}); err != nil {
			t.Fatalf("unfenced write: %v", err)
		}

		// A service the plan leaves out is retired, and fenced; a service
		// that comes back keeps counting its tokens.
		res = supervise(map[string]int64{"housekeeping": b.ID})
		if len(res.Retired) != 2 {
			t.Fatalf("retired %v", res.Retired)
		}
		if err := s.ServiceSucceeded(ctx, store.Fence{Service: "poller:r1", Token: 2}); !errors.Is(err, store.ErrFenced) {
			t.Fatalf("write of a retired service: %v", err)
		}
		if active, _ := s.Services(ctx, false); len(active) != 1 || active[0].Name != "housekeeping" {
			t.Fatalf("active services %+v", active)
		}
		supervise(map[string]int64{"housekeeping": b.ID, "poller:r1": a.ID})
		if sv := serviceByName(t, s, "poller:r1"); sv.State != store.ServiceActive || sv.Token != 4 {
			t.Fatalf("revived service %+v, want token 4", sv)
		} else if sv.LastSuccess != nil || sv.LastError != "" || sv.LastErrorAt != nil {
			t.Fatalf("revived service %+v keeps the health of the one retired", sv)
		}

		// Stopping a master releases its services.
		if err := s.EndMaster(ctx, b.ID, store.MasterStopped, "stop"); err != nil {
			t.Fatal(err)
		}
		if sv := serviceByName(t, s, "housekeeping"); sv.Owner != nil || sv.Token != 2 {
			t.Fatalf("service of a stopped master %+v", sv)
		}

		// A plan naming a master that is not live is a bug, refused loudly.
		_, err = s.Supervise(ctx, lease, time.Minute, place(map[string]int64{"housekeeping": b.ID}))
		if err == nil || !strings.Contains(err.Error(), "not live") {
			t.Fatalf("placement on a stopped master: %v", err)
		}
	})
}

func TestSuperviseDeclaresSilentMastersDead(t *testing.T) {
	eachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		a, b := join(t, s, "a", "x"), join(t, s, "b", "x")
		lease, err := s.AcquireLease(ctx, store.SupervisorLease, a.ID, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Supervise(ctx, lease, time.Minute, place(map[string]int64{"poller:r": b.ID})); err != nil {
			t.Fatal(err)
		}
		time.Sleep(60 * time.Millisecond)
		if _, err := s.Heartbeat(ctx, a.ID); err != nil {
			t.Fatal(err)
		}
		var seen store.ClusterView
		res, err := s.Supervise(ctx, lease, 50*time.Millisecond, func(v store.ClusterView) []store.Placement {
			seen = v
			return place(map[string]int64{"poller:r": a.ID})(v)
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Dead) != 1 || res.Dead[0].ID != b.ID || !strings.Contains(res.Dead[0].Reason, "no heartbeat") {
			t.Fatalf("dead %+v", res.Dead)
		}
		if len(seen.Masters) != 1 || seen.Masters[0].ID != a.ID || seen.Services[0].Owner != nil {
			t.Fatalf("view after the death %+v", seen)
		}
		if _, err := s.Heartbeat(ctx, b.ID); !errors.Is(err, store.ErrMasterGone) {
			t.Fatalf("dead master's heartbeat: %v", err)
		}
		if sv := serviceByName(t, s, "poller:r"); *sv.Owner != "a" || sv.Token != 3 {
			t.Fatalf("service after its owner died %+v, want a with token 3", sv)
		}
	})
}

func TestSuperviseSeesEndedSessionsAtOnce(t *testing.T) {
	s := pgStore(t)
	ctx := context.Background()
	a, b := join(t, s, "a"), join(t, s, "b")
	lease, err := s.AcquireLease(ctx, store.SupervisorLease, a.ID, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	b.endSession(t, s)
	res, err := s.Supervise(ctx, lease, time.Minute, func(store.ClusterView) []store.Placement { return nil })
	if err != nil || len(res.Dead) != 1 || res.Dead[0].Reason != "database session ended" {
		t.Fatalf("round after b's session ended: %+v %v", res, err)
	}
}

func TestClusterWritesNotify(t *testing.T) {
	s := pgStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := s.SessionConn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+store.NotifyChannel); err != nil {
		t.Fatal(err)
	}
	join(t, s, "a")
	for _, want := range []string{store.TopicService, store.TopicRequest} {
		if want == store.TopicRequest {
			if err := s.Notify(ctx, want); err != nil {
				t.Fatal(err)
			}
		}
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			t.Fatalf("waiting for %s: %v", want, err)
		}
		if n.Channel != store.NotifyChannel || n.Payload != want {
			t.Fatalf("notification %+v, want %s", n, want)
		}
	}
}

func TestPruneMasters(t *testing.T) {
	eachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		a, b := join(t, s, "a", "x"), join(t, s, "b")
		if err := s.EndMaster(ctx, b.ID, store.MasterStopped, "stop"); err != nil {
			t.Fatal(err)
		}
		lease, _ := s.AcquireLease(ctx, store.SupervisorLease, a.ID, time.Minute)
		if _, err := s.Supervise(ctx, lease, time.Minute, place(map[string]int64{"housekeeping": a.ID})); err != nil {
			t.Fatal(err)
		}
		fence := store.Fence{Service: "housekeeping", Token: 1}
		if n, err := s.PruneMasters(ctx, fence, time.Hour); err != nil || n != 0 {
			t.Fatalf("prune recent: %d %v", n, err)
		}
		time.Sleep(5 * time.Millisecond)
		if n, err := s.PruneMasters(ctx, fence, time.Millisecond); err != nil || n != 1 {
			t.Fatalf("prune: %d %v", n, err)
		}
		if _, err := s.PruneMasters(ctx, store.Fence{Service: "housekeeping", Token: 9}, 0); !errors.Is(err, store.ErrFenced) {
			t.Fatalf("prune with a stale fence: %v", err)
		}
		if all, _ := s.Masters(ctx, true); len(all) != 1 || all[0].ID != a.ID {
			t.Fatalf("masters after prune %+v", all)
		}
	})
}

// pgStore opens a store on a fresh PostgreSQL database.
func pgStore(t *testing.T) *store.Store {
	t.Helper()
	t.Parallel()
	s, err := store.Open(context.Background(), pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestFencedPollIsRefusedAfterAMove(t *testing.T) {
	eachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		a, b := join(t, s, "a", "x"), join(t, s, "b", "x")
		lease, err := s.AcquireLease(ctx, store.SupervisorLease, a.ID, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Supervise(ctx, lease, time.Minute, place(map[string]int64{"poller:r": a.ID})); err != nil {
			t.Fatal(err)
		}
		old := store.Fence{Service: "poller:r", Token: 1}
		heads := map[string]string{"refs/heads/main": "c1"}
		if _, err := s.RecordFencedPoll(ctx, old, "r", heads, nil); err != nil {
			t.Fatalf("owner's poll: %v", err)
		}
		if _, err := s.Supervise(ctx, lease, time.Minute, place(map[string]int64{"poller:r": b.ID})); err != nil {
			t.Fatal(err)
		}
		late := []store.Change{{Branch: "refs/heads/main", Revision: "c2", When: time.Now()}}
		_, err = s.RecordFencedPoll(ctx, old, "r", map[string]string{"refs/heads/main": "c2"}, late)
		if !errors.Is(err, store.ErrFenced) {
			t.Fatalf("replaced owner's poll: %v, want ErrFenced", err)
		}
		got, _ := s.RepoHeads(ctx, "r")
		recorded, _ := s.Changes(ctx, store.ListOptions{})
		if got["refs/heads/main"] != "c1" || len(recorded) != 0 {
			t.Fatalf("a refused poll wrote heads %v and changes %v", got, recorded)
		}
	})
}
