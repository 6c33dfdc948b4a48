package store_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/regent-ci/regent/internal/store"
)

func delivery(id, old, rev string) store.Delivery {
	return store.Delivery{Source: "github", ID: id, Repository: "app", Ref: "refs/heads/main",
		OldRevision: old, NewRevision: rev}
}

// The store's half of field case C15: the same delivery recorded by many
// masters at once, then again later, makes one change; so does another
// delivery id reporting the same move.
func TestRecordDeliveryOnceConcurrentlyAndLaterC15(t *testing.T) {
	eachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		changes := []store.Change{testChange("main", "r1"), testChange("main", "r2")}
		const masters = 4
		var wg sync.WaitGroup
		added := make([]int, masters)
		dup := make([]bool, masters)
		errs := make([]error, masters)
		for i := range masters {
			wg.Add(1)
			go func() {
				defer wg.Done()
				a, d, err := s.RecordDelivery(ctx, delivery("d-1", "r0", "r2"), changes)
				added[i], dup[i], errs[i] = len(a), d, err
			}()
		}
		wg.Wait()
		firsts := 0
		for i := range masters {
			if errs[i] != nil {
				t.Fatalf("master %d: %v", i, errs[i])
			}
			if !dup[i] {
				firsts++
				if added[i] != 2 {
					t.Fatalf("the first delivery added %d changes, want 2", added[i])
				}
			}
		}
		if firsts != 1 {
			t.Fatalf("%d deliveries were taken as first, want 1", firsts)
		}
		for _, d := range []store.Delivery{delivery("d-1", "r0", "r2"), delivery("d-2", "r0", "r2"),
			delivery("d-1", "r2", "r3")} {
			a, isDup, err := s.RecordDelivery(ctx, d, append(changes, testChange("main", "r3")))
			if err != nil || !isDup || len(a) != 0 {
				t.Fatalf("later delivery %+v: added %d, duplicate %v, %v; want a duplicate", d, len(a), isDup, err)
			}
		}
		all, err := s.Changes(ctx, store.ListOptions{})
		if err != nil || len(all) != 2 {
			t.Fatalf("changes = %d, %v; want 2", len(all), err)
		}
		// A new move of the branch is not a duplicate, and a delivery
		// without id is kept apart by its move alone.
		for i, d := range []store.Delivery{delivery("d-3", "r2", "r3"), delivery("", "r3", "r4"), delivery("", "r4", "r5")} {
			a, isDup, err := s.RecordDelivery(ctx, d, []store.Change{testChange("main", d.NewRevision)})
			if err != nil || isDup || len(a) != 1 {
				t.Fatalf("delivery %d: added %d, duplicate %v, %v", i, len(a), isDup, err)
			}
		}
		h, err := s.ReposHealth(ctx)
		if err != nil || h["app"].LastWebhook == nil {
			t.Fatalf("health = %+v, %v; want the last webhook noted", h, err)
		}
		if n, err := s.PruneWebhookDeliveries(ctx, store.Fence{}, time.Hour); err != nil || n != 0 {
			t.Fatalf("pruned %d recent deliveries, %v", n, err)
		}
		if n, err := s.PruneWebhookDeliveries(ctx, store.Fence{}, -time.Hour); err != nil || n != 4 {
			t.Fatalf("pruned %d deliveries, %v; want all 4", n, err)
		}
	})
}

func TestPollHealthTracksFailingSince(t *testing.T) {
	eachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
		reports := []store.PollReport{
			{Repository: "app", Master: "m1", At: t0, NextPoll: t0.Add(time.Minute)},
			{Repository: "app", Master: "m1", At: t0.Add(time.Minute), Err: "unreachable"},
			{Repository: "app", Master: "m2", At: t0.Add(2 * time.Minute), Err: "still unreachable"},
		}
		for _, r := range reports {
			if err := s.RecordPollHealth(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		h, err := s.ReposHealth(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got := h["app"]
		if got.Master != "m2" || got.LastError != "still unreachable" || got.NextPoll != nil ||
			!got.LastSuccess.Equal(t0) || !got.FailingSince.Equal(t0.Add(time.Minute)) {
			t.Fatalf("health while failing = %+v", got)
		}
		if err := s.RecordPollHealth(ctx, store.PollReport{Repository: "app", Master: "m2",
			At: t0.Add(3 * time.Minute)}); err != nil {
			t.Fatal(err)
		}
		h, _ = s.ReposHealth(ctx)
		if got := h["app"]; got.FailingSince != nil || got.LastError == "" || !got.LastSuccess.Equal(t0.Add(3*time.Minute)) {
			t.Fatalf("health after recovery = %+v", got)
		}
	})
}

// Pending requests of a collapsing builder for one branch are merged into
// the newest; each merged one names it, and leads to the build that ran
// it once claimed.
func TestCollapseMergesPendingRequestsOfABranch(t *testing.T) {
	eachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		st := state()
		st.Builders[1].CollapseRequests = true
		st.Workers[0].MaxBuilds = 10
		apply(t, s, st)
		mk := func(branch, rev string, builders ...string) store.Buildset {
			bs, _, err := s.CreateBuildset(ctx, store.BuildsetInput{Reason: "test", Scheduler: "s",
				Properties: map[string]string{"branch": branch, "revision": rev, "repository": "u"},
				Builders:   builders})
			if err != nil {
				t.Fatal(err)
			}
			return bs
		}
		first := mk("main", "a1", "unit", "deploy")
		mk("dev", "b1", "unit")
		second := mk("main", "a2", "unit")
		third := mk("main", "a3", "unit")

		reqs, err := s.Requests(ctx, store.RequestFilter{Builder: "unit"})
		if err != nil {
			t.Fatal(err)
		}
		state := map[int64]store.BuildRequest{}
		for _, r := range reqs {
			state[r.BuildsetID] = r
		}
		newest := third.Requests[0].ID
		for _, bs := range []store.Buildset{first, second} {
			r := state[bs.ID]
			if r.State != store.RequestCancelled || r.MergedInto == nil || *r.MergedInto != newest ||
				r.Reason != fmt.Sprintf("merged into build request %d, which builds the newer revision a3 of main", newest) {
				t.Fatalf("merged request = %+v", r)
			}
		}
		if n := pendingCount(t, s, "unit"); n != 2 {
			t.Fatalf("unit has %d pending requests, want 2 (dev and the newest main)", n)
		}
		if n := pendingCount(t, s, "deploy"); n != 1 {
			t.Fatalf("deploy, which does not collapse, has %d pending requests, want 1", n)
		}

		// Once the newest request runs, the merged ones lead to its build.
		sess, _, err := s.OpenSession(ctx, "w1", "pw1", "m1", "127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		claimed, err := s.Claim(ctx, sess, "m1", 10)
		if err != nil {
			t.Fatal(err)
		}
		var covering int64
		for _, c := range claimed {
			if c.Build.RequestID == newest {
				covering = c.Build.ID
			}
		}
		reqs, err = s.Requests(ctx, store.RequestFilter{Buildset: first.ID})
		if err != nil || covering == 0 {
			t.Fatalf("claimed %+v: %v", claimed, err)
		}
		for _, r := range reqs {
			if r.Builder == "unit" && (r.CoveredBy == nil || *r.CoveredBy != covering) {
				t.Fatalf("merged request = %+v, want it covered by build %d", r, covering)
			}
		}
	})
}

func pendingCount(t *testing.T, s *store.Store, builder string) int {
	t.Helper()
	reqs, err := s.Requests(context.Background(), store.RequestFilter{Builder: builder, State: store.RequestPending})
	if err != nil {
		t.Fatal(err)
	}
	return len(reqs)
}
