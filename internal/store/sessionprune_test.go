package store_test

import (
	"context"
	"testing"

	"github.com/regent-ci/regent/internal/build"
	"github.com/regent-ci/regent/internal/store"
)

// C03 (store part): a worker that reconnects often keeps a bounded number
// of session rows; sessions that ran builds stay, as the builds name them.
func TestPruneSessionsKeepsTheNewestAndThoseWithBuilds(t *testing.T) {
	eachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		apply(t, s, state())
		first := login(t, s, "w1", "pw1")
		force(t, s, "unit")
		runBuild(t, s, first, build.Success)
		var last store.Session
		for range 30 {
			last = login(t, s, "w1", "pw1")
		}
		n, err := s.PruneSessions(ctx, last.WorkerID, 5)
		if err != nil {
			t.Fatal(err)
		}
		// 31 sessions: the 5 newest and the one with a build stay.
		if n != 25 {
			t.Fatalf("pruned %d sessions, want 25", n)
		}
		if _, err := s.SessionByID(ctx, first.ID); err != nil {
			t.Fatalf("the session that ran a build was pruned: %v", err)
		}
		if got, err := s.SessionByID(ctx, last.ID); err != nil || got.State != store.SessionActive {
			t.Fatalf("the live session: %+v, %v", got, err)
		}
		if n, _ := s.PruneSessions(ctx, last.WorkerID, 5); n != 0 {
			t.Fatalf("a second prune deleted %d", n)
		}
	})
}
