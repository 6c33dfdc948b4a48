package store_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/regent-ci/regent/internal/store"
)

// stamp is the fence a row records: service@token, or "" for a row
// written outside any service, and the database time it was written.
type stamp struct {
	fence string
	at    int64
}

// stampOf reads the fence columns of the one row of table that where
// selects.
func stampOf(t *testing.T, s *store.Store, table, where string, args ...any) stamp {
	t.Helper()
	var service sql.NullString
	var token, at sql.NullInt64
	err := s.DB().QueryRowContext(context.Background(), `SELECT fence_service, fence_token, fenced_at
		FROM `+table+` WHERE `+where, args...).Scan(&service, &token, &at)
	if err != nil {
		t.Fatalf("read the fence of %s where %s %v: %v", table, where, args, err)
	}
	if service.Valid != token.Valid || service.Valid != at.Valid {
		t.Fatalf("%s where %s: fence columns half set: %v %v %v", table, where, service, token, at)
	}
	if !service.Valid {
		return stamp{}
	}
	return stamp{fence: store.Fence{Service: service.String, Token: token.Int64}.String(), at: at.Int64}
}

// count counts the rows of table that where selects.
func count(t *testing.T, s *store.Store, table, where string, args ...any) int {
	t.Helper()
	var n int
	if err := s.DB().QueryRowContext(context.Background(), `SELECT count(*) FROM `+table+` WHERE `+where,
		args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Every write a clustered service makes records its fence; a write under
// a superseded token is refused and leaves no row; writes made outside a
// service record none; and every grant of a token is kept, dated so that
// accepted writes fall between the grant of their token and the next.
func TestFencedWritesRecordTheirTokenAndStaleOnesLeaveNoRow(t *testing.T) {
	eachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		apply(t, s, state())
		a, b := join(t, s, "a", "x"), join(t, s, "b", "x")
		lease, err := s.AcquireLease(ctx, store.SupervisorLease, a.ID, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		supervise := func(owner int64) {
			t.Helper()
			owners := map[string]int64{"poller:r": owner, "scheduler:tick": owner, "config-watcher": owner}
			if _, err := s.Supervise(ctx, lease, time.Minute, place(owners)); err != nil {
				t.Fatal(err)
			}
		}
		supervise(a.ID)
		poller := store.Fence{Service: "poller:r", Token: 1}
		tick := store.Fence{Service: "scheduler:tick", Token: 1}
		watcher := store.Fence{Service: "config-watcher", Token: 1}

		// Accepted writes carry their fence.
		c1 := []store.Change{{Branch: "refs/heads/main", Revision: "c1", When: time.Now()}}
		if _, err := s.RecordFencedPoll(ctx, poller, "r", map[string]string{"refs/heads/main": "c1"}, c1); err != nil {
			t.Fatal(err)
		}
		due := time.Now().Add(-time.Minute)
		bs, ran, err := s.RecordRun(ctx, tick, "tick", due, due, store.BuildsetInput{
			Reason: "due", Scheduler: "tick", Builders: []string{"unit"}})
		if err != nil || !ran {
			t.Fatalf("record run: %v, ran %v", err, ran)
		}
		timer := store.SchedulerTimer{Branch: "main", Deadline: time.Now(), ChangeID: 1}
		if err := s.ArmTimers(ctx, tick, "tick", []store.SchedulerTimer{timer}, 1); err != nil {
			t.Fatal(err)
		}
		armed := stampOf(t, s, "scheduler_state", "scheduler = 'tick' AND item = 'branch:main'")
		fired, ok, err := s.FireTimer(ctx, tick, "tick", timer, store.BuildsetInput{
			Reason: "stable", Scheduler: "tick", Builders: []string{"unit"}})
		if err != nil || !ok {
			t.Fatalf("fire timer: %v, fired %v", err, ok)
		}
		st := state()
		st.Builders = st.Builders[:1]
		res, err := s.ApplyFenced(ctx, st, "watched", "a", watcher)
		if err != nil || !res.Created {
			t.Fatalf("fenced apply: %+v, %v", res, err)
		}
		accepted := map[string]stamp{
			"change":         stampOf(t, s, "changes", "revision = 'c1'"),
			"run":            stampOf(t, s, "scheduler_state", "scheduler = 'tick' AND item = ''"),
			"run buildset":   stampOf(t, s, "buildsets", "id = $1", bs.ID),
			"timer":          armed,
			"timer buildset": stampOf(t, s, "buildsets", "id = $1", fired.ID),
			"generation":     stampOf(t, s, "generations", "number = $1", res.Generation.Number),
		}
		want := map[string]string{"change": poller.String(), "run": tick.String(), "run buildset": tick.String(),
			"timer": tick.String(), "timer buildset": tick.String(), "generation": watcher.String()}
		for what, got := range accepted {
			if got.fence != want[what] || got.at == 0 {
				t.Errorf("%s written under %s records %+v", what, want[what], got)
			}
		}

		// Writes outside any service record no fence.
		forced := force(t, s, "deploy")
		if _, _, err := s.AddChange(ctx, store.Change{Repository: "r", Branch: "refs/heads/dev",
			Revision: "h1", When: time.Now()}); err != nil {
			t.Fatal(err)
		}
		unfenced := apply(t, s, state())
		for what, got := range map[string]stamp{
			"forced buildset": stampOf(t, s, "buildsets", "id = $1", forced.ID),
			"webhook change":  stampOf(t, s, "changes", "revision = 'h1'"),
			"CLI generation":  stampOf(t, s, "generations", "number = $1", unfenced.Generation.Number),
		} {
			if got != (stamp{}) {
				t.Errorf("%s made outside any service records %+v", what, got)
			}
		}

		// Once the services move, writes under the old tokens are refused
		// and leave no row.
		supervise(b.ID)
		c2 := []store.Change{{Branch: "refs/heads/main", Revision: "c2", When: time.Now()}}
		_, err = s.RecordFencedPoll(ctx, poller, "r", map[string]string{"refs/heads/main": "c2"}, c2)
		if !errors.Is(err, store.ErrFenced) {
			t.Errorf("stale poll: %v, want ErrFenced", err)
		}
		buildsets := count(t, s, "buildsets", "1 = 1")
		_, _, err = s.RecordRun(ctx, tick, "tick", time.Now(), time.Now(), store.BuildsetInput{
			Reason: "late", Scheduler: "tick", Builders: []string{"unit"}})
		if !errors.Is(err, store.ErrFenced) {
			t.Errorf("stale run: %v, want ErrFenced", err)
		}
		err = s.ArmTimers(ctx, tick, "tick", []store.SchedulerTimer{{Branch: "dev", Deadline: time.Now(), ChangeID: 2}}, 2)
		if !errors.Is(err, store.ErrFenced) {
			t.Errorf("stale timer: %v, want ErrFenced", err)
		}
		st.Builders = state().Builders[1:]
		if _, err := s.ApplyFenced(ctx, st, "watched", "a", watcher); !errors.Is(err, store.ErrFenced) {
			t.Errorf("stale apply: %v, want ErrFenced", err)
		}
		if n := count(t, s, "changes", "revision = 'c2'"); n != 0 {
			t.Errorf("the stale poll left %d changes", n)
		}
		if n := count(t, s, "buildsets", "1 = 1"); n != buildsets {
			t.Errorf("the stale run left %d buildsets, want %d", n, buildsets)
		}
		if n := count(t, s, "scheduler_state", "item = 'branch:dev'"); n != 0 {
			t.Errorf("the stale timer left %d rows", n)
		}
		if n := count(t, s, "generations", "number > $1", unfenced.Generation.Number); n != 0 {
			t.Errorf("the stale apply left %d generations", n)
		}

		// The grant history: each token, its owner, in time order; a
		// release is a grant to nobody. Accepted writes fall between the
		// grant of their token and the next.
		if err := s.EndMaster(ctx, b.ID, store.MasterStopped, "stop"); err != nil {
			t.Fatal(err)
		}
		grants, err := s.ServiceGrants(ctx, "poller:r")
		if err != nil {
			t.Fatal(err)
		}
		if len(grants) != 3 || grants[0].Master != a.ID || grants[1].Master != b.ID || grants[2].Master != 0 {
			t.Fatalf("grants of poller:r %+v, want tokens 1 to a, 2 to b, 3 to nobody", grants)
		}
		for i, g := range grants {
			if g.Token != int64(i+1) || (i > 0 && g.GrantedAt.Before(grants[i-1].GrantedAt)) {
				t.Fatalf("grants of poller:r %+v out of order", grants)
			}
		}
		change := accepted["change"].at
		if us := grants[0].GrantedAt.UnixMicro(); change < us || change > grants[1].GrantedAt.UnixMicro() {
			t.Errorf("the change was written at %d, not between the grants %+v", change, grants[:2])
		}
	})
}
