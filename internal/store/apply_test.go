package store_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/regent-ci/regent/internal/build"
	"github.com/regent-ci/regent/internal/config"
	"github.com/regent-ci/regent/internal/store"
)

// manyState is state() with n more builders and n force schedulers, more
// than one INSERT statement carries, and three more workers, each with its
// own password.
func manyState(n int) *config.State {
	st := state()
	for i := range 3 {
		st.Workers = append(st.Workers, config.Worker{Name: fmt.Sprintf("x%d", i),
			Password: fmt.Sprintf("secret-%d", i), MaxBuilds: 1, Tags: []string{"linux"}})
	}
	for i := range n {
		name := fmt.Sprintf("b%04d", i)
		st.Builders = append(st.Builders, config.Builder{Name: name, Workers: []string{"x1"},
			Description: "builder " + name, Tags: []string{"many"},
			Steps: []config.Step{{Kind: config.StepShell, Name: "test", Command: "make test"}}})
		st.Schedulers = append(st.Schedulers, config.Scheduler{Name: fmt.Sprintf("s%04d", i),
			Kind: config.SchedulerForce, Builders: []string{name}})
	}
	return st
}

func TestApplyStoresEveryEntityOfALargeConfiguration(t *testing.T) {
	eachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		const n = 450
		apply(t, s, manyState(n))

		bs, err := s.Builders(ctx, false)
		if err != nil || len(bs) != n+2 {
			t.Fatalf("%d active builders (%v), want %d", len(bs), err, n+2)
		}
		last := bs[n-1] // sorted by name: b0000..b0449, deploy, unit
		if last.Name != "b0449" || last.Description != "builder b0449" || !equal(last.Tags, []string{"many"}) {
			t.Fatalf("last builder stored as %+v", last)
		}
		if got := count(t, s, "schedulers", "retired_generation IS NULL"); got != n {
			t.Fatalf("%d active schedulers, want %d", got, n)
		}
		ws, err := s.Workers(ctx, false)
		if err != nil || len(ws) != 4 {
			t.Fatalf("%d workers (%v), want 4", len(ws), err)
		}
		for i := range 3 {
			name := fmt.Sprintf("x%d", i)
			login(t, s, name, fmt.Sprintf("secret-%d", i))
			if _, _, err := s.OpenSession(ctx, name, "secret-9", "m1", "h"); !errors.Is(err, store.ErrBadCredentials) {
				t.Fatalf("%s with another worker's password: %v, want ErrBadCredentials", name, err)
			}
		}
		force(t, s, "b0449")
	})
}

// A name that returns brings back its retired row with its history, for
// builders, workers and schedulers alike, and a returning worker logs in
// with the password it returns with.
func TestApplyBringsBackARetiredName(t *testing.T) {
	eachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		apply(t, s, manyState(3))
		sess := login(t, s, "w1", "pw1")
		force(t, s, "unit")
		runBuild(t, s, sess, build.Success)
		before := builderIDs(t, s)

		without := manyState(3)
		without.Builders = without.Builders[:1] // only deploy
		without.Workers = without.Workers[:1]   // only w1
		without.Schedulers = nil
		apply(t, s, without)
		if got := builderNames(t, s, false); !equal(got, []string{"deploy"}) {
			t.Fatalf("active builders = %v", got)
		}

		back := manyState(3)
		back.Workers[2].Password = "changed"
		apply(t, s, back)
		after := builderIDs(t, s)
		for name, id := range before {
			if after[name] != id {
				t.Fatalf("builder %s came back as row %d, was %d", name, after[name], id)
			}
		}
		if n := count(t, s, "builders", "1 = 1"); n != len(before) {
			t.Fatalf("%d builder rows, want the %d there were", n, len(before))
		}
		if n := count(t, s, "schedulers", "1 = 1"); n != 3 {
			t.Fatalf("%d scheduler rows, want 3", n)
		}
		if n := count(t, s, "workers", "1 = 1"); n != 4 {
			t.Fatalf("%d worker rows, want 4", n)
		}
		builds, err := s.Builds(ctx, store.BuildFilter{Builder: "unit"})
		if err != nil || len(builds) != 1 {
			t.Fatalf("unit has %d builds (%v), want its old one", len(builds), err)
		}
		login(t, s, "x1", "changed")
		if _, _, err := s.OpenSession(ctx, "x1", "secret-1", "m1", "h"); !errors.Is(err, store.ErrBadCredentials) {
			t.Fatalf("returning worker with its old password: %v, want ErrBadCredentials", err)
		}
	})
}

// Changing a worker's settings but not its password keeps its sessions and
// its hash; an apply changing nothing of a worker does not write its row.
func TestApplyWorkerSettingsKeepItsSessions(t *testing.T) {
	eachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		apply(t, s, manyState(1))
		_, token, err := s.OpenSession(ctx, "x0", "secret-0", "m1", "h")
		if err != nil {
			t.Fatal(err)
		}
		hash := func(name string) string {
			var h string
			if err := s.DB().QueryRowContext(ctx, `SELECT password_hash FROM workers
				WHERE name = $1 AND retired_generation IS NULL`, name).Scan(&h); err != nil {
				t.Fatal(err)
			}
			return h
		}
		hashed := hash("x0")

		changed := manyState(1)
		changed.Workers[1].MaxBuilds, changed.Workers[1].Tags = 4, []string{"arm"}
		changed.Builders[0].Description = "only a builder changed"
		res := apply(t, s, changed)
		if res.RevokedSessions != 0 {
			t.Fatalf("revoked %d sessions, want none", res.RevokedSessions)
		}
		sess, err := s.SessionByToken(ctx, token)
		if err != nil || sess.State != store.SessionActive {
			t.Fatalf("session state %q (%v), want active", sess.State, err)
		}
		if got := hash("x0"); got != hashed {
			t.Fatal("the password hash changed with the settings")
		}
		ws, err := s.Workers(ctx, false)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range ws {
			if w.Name == "x0" && (w.MaxBuilds != 4 || !equal(w.Tags, []string{"arm"})) {
				t.Fatalf("x0 stored as %+v, want 4 builds and tag arm", w)
			}
		}
		gen := res.Generation.Number
		if n := count(t, s, "workers", "updated_generation = $1", gen); n != 1 {
			t.Fatalf("generation %d wrote %d worker rows, want only x0's", gen, n)
		}
	})
}

// An apply that fails part way writes nothing: the previous generation
// and its entities stay as they were.
func TestApplyThatFailsWritesNothing(t *testing.T) {
	eachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		first := apply(t, s, state())

		bad := manyState(300)
		bad.Workers = append(bad.Workers, config.Worker{Name: "x2", Password: "twice", MaxBuilds: 1})
		if _, err := s.Apply(ctx, bad, "test", "tester"); err == nil {
			t.Fatal("applying two workers of one name succeeded")
		}
		g, err := s.ActiveGeneration(ctx)
		if err != nil || g.Number != first.Generation.Number {
			t.Fatalf("active generation %d (%v), want %d", g.Number, err, first.Generation.Number)
		}
		if got := builderNames(t, s, true); !equal(got, []string{"deploy", "unit"}) {
			t.Fatalf("builders after the failed apply = %v", got)
		}
		for _, table := range []string{"schedulers", "workers"} {
			if n := count(t, s, table, "name <> 'w1'"); n != 0 {
				t.Fatalf("%d %s rows left by the failed apply", n, table)
			}
		}
	})
}

func builderIDs(t *testing.T, s *store.Store) map[string]int64 {
	t.Helper()
	bs, err := s.Builders(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]int64{}
	for _, b := range bs {
		ids[b.Name] = b.ID
	}
	return ids
}
