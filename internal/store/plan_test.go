package store_test

import (
	"context"
	"strings"
	"testing"

	"github.com/regent-ci/regent/internal/build"
	"github.com/regent-ci/regent/internal/config"
	"github.com/regent-ci/regent/internal/store"
)

// planOf returns the plan of applying st over the active generation.
func planOf(t *testing.T, s *store.Store, st *config.State) string {
	t.Helper()
	p, err := s.Plan(context.Background(), st)
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	return p.String()
}

// generationPlanOf returns the plan of generation to over generation from.
func generationPlanOf(t *testing.T, s *store.Store, from, to int64) string {
	t.Helper()
	p, err := s.GenerationPlan(context.Background(), from, to)
	if err != nil {
		t.Fatalf("plan of generation %d over %d: %v", to, from, err)
	}
	return p.String()
}

// A worker's new password shows in the plan of an apply, compared with
// the stored digest, and in the plan of the stored generation later,
// although no generation holds a password; the first generation's plan
// adds everything.
func TestPlanShowsAPasswordChange(t *testing.T) {
	eachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		apply(t, s, state())
		if got := planOf(t, s, state()); got != "No changes.\n" {
			t.Fatalf("plan of the same state:\n%s", got)
		}
		repassworded := state()
		repassworded.Workers[0].Password = "pw2"
		const passwordPlan = "~ worker w1: password\nPlan: 0 to add, 1 to change, 0 to rename, 0 to remove.\n"
		if got := planOf(t, s, repassworded); got != passwordPlan {
			t.Fatalf("plan of a new password:\n%swant:\n%s", got, passwordPlan)
		}
		login(t, s, "w1", "pw1")
		if res := apply(t, s, repassworded); res.Generation.Number != 2 || res.RevokedSessions != 1 {
			t.Fatalf("apply = %+v, want generation 2 revoking 1 session", res)
		}
		if got := generationPlanOf(t, s, 1, 2); got != passwordPlan {
			t.Fatalf("plan of generation 2:\n%swant:\n%s", got, passwordPlan)
		}

		// Settings alone are not a new password, and over two
		// generations the password counts still.
		settings := state()
		settings.Workers[0].Password = "pw2"
		settings.Workers[0].MaxBuilds = 3
		apply(t, s, settings)
		if got := generationPlanOf(t, s, 2, 3); !strings.HasPrefix(got, "~ worker w1: max_builds\n") {
			t.Fatalf("plan of generation 3:\n%s", got)
		}
		if got := generationPlanOf(t, s, 1, 3); !strings.HasPrefix(got, "~ worker w1: password, max_builds\n") {
			t.Fatalf("plan of generation 3 over 1:\n%s", got)
		}

		const everything = "+ worker w1\n+ builder deploy\n+ builder unit\n" +
			"Plan: 3 to add, 0 to change, 0 to rename, 0 to remove.\n"
		if got := generationPlanOf(t, s, 0, 1); got != everything {
			t.Fatalf("plan of generation 1:\n%swant:\n%s", got, everything)
		}

		// Neither the states nor what the store keeps beside them hold
		// a password.
		var n int
		err := s.DB().QueryRowContext(ctx, `SELECT count(*) FROM generations WHERE state LIKE '%pw%'
			OR lineage LIKE '%pw%'`).Scan(&n)
		if err != nil || n != 0 {
			t.Fatalf("%d generations hold a password (%v)", n, err)
		}
	})
}

// A builder whose previous_names names a builder retired earlier takes
// over its history, and the plans say so, before and after the apply.
func TestPreviousNameOfARetiredBuilderBringsItBack(t *testing.T) {
	eachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		apply(t, s, state())
		sess := login(t, s, "w1", "pw1")
		force(t, s, "deploy")
		runBuild(t, s, sess, build.Success)
		deployID := builderIDs(t, s)["deploy"]

		without := state()
		without.Builders = without.Builders[1:] // deploy retires
		apply(t, s, without)

		back := state()
		back.Builders[0].Name, back.Builders[0].PreviousNames = "deploy2", []string{"never", "deploy"}
		const want = "> builder deploy (retired) -> deploy2\n" +
			"Plan: 0 to add, 0 to change, 1 to rename, 0 to remove.\n"
		if got := planOf(t, s, back); got != want {
			t.Fatalf("plan:\n%swant:\n%s", got, want)
		}
		res := apply(t, s, back)
		if got := generationPlanOf(t, s, res.Generation.Number-1, res.Generation.Number); got != want {
			t.Fatalf("plan of the stored generation:\n%swant:\n%s", got, want)
		}
		if got := builderNames(t, s, true); !equal(got, []string{"deploy2", "unit"}) {
			t.Fatalf("builders with retired = %v, want deploy brought back as deploy2", got)
		}
		if id := builderIDs(t, s)["deploy2"]; id != deployID {
			t.Fatalf("deploy2 is row %d, want deploy's row %d", id, deployID)
		}
		builds, err := s.Builds(ctx, store.BuildFilter{Builder: "deploy2"})
		if err != nil || len(builds) != 1 {
			t.Fatalf("deploy2 has %d builds (%v), want deploy's one", len(builds), err)
		}
	})
}
