package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/regent-ci/regent/internal/build"
	"github.com/regent-ci/regent/internal/store"
)

// C07 (store part): a build whose cancellation was asked for and whose
// worker is then lost ends cancelled, with the canceller's reason, and is
// not retried even when its builder retries lost builds.
func TestCancelledBuildLostWithItsWorkerEndsCancelled(t *testing.T) {
	eachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		st := state()
		st.Builders[1].RetryLost = true
		apply(t, s, st)
		sess := login(t, s, "w1", "pw1")
		force(t, s, "unit")
		cl, err := s.Claim(ctx, sess, "m1", 1)
		if err != nil || len(cl) != 1 {
			t.Fatalf("claim: %v, %d", err, len(cl))
		}
		id := cl[0].Build.ID
		if err := s.CancelBuild(ctx, id, "stop it"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond)
		if _, err := s.ExpireSessions(ctx, time.Millisecond); err != nil {
			t.Fatal(err)
		}
		b, err := s.BuildByID(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if deref(b.Result) != build.Cancelled || !strings.HasPrefix(b.Reason, "stop it") {
			t.Fatalf("build ended %s (%q), want cancelled with the canceller's reason", deref(b.Result), b.Reason)
		}
		pending, _ := s.Requests(ctx, store.RequestFilter{State: store.RequestPending})
		if len(pending) != 0 {
			t.Fatalf("a cancelled build was retried: %+v", pending)
		}
	})
}

// A build its live worker does not report running is retried if no step
// of it ever started (the worker never received it, as when the master
// that claimed it died before answering), whatever the builder's policy;
// one whose steps started ends with an exception.
func TestUnreportedBuildIsRetriedOnlyIfNothingRan(t *testing.T) {
	eachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		apply(t, s, state())
		sess := login(t, s, "w1", "pw1")
		force(t, s, "unit")
		force(t, s, "unit")
		cl, err := s.Claim(ctx, sess, "m1", 2)
		if err != nil || len(cl) != 2 {
			t.Fatalf("claim: %v, %d", err, len(cl))
		}
		started, unreceived := cl[0], cl[1]
		if err := s.StartStep(ctx, started.Build.ID, started.AttemptToken, 1, "test"); err != nil {
			t.Fatal(err)
		}
		if err := s.ReconcileRunning(ctx, sess.ID, nil, 0); err != nil {
			t.Fatal(err)
		}
		b, _ := s.BuildByID(ctx, started.Build.ID)
		if deref(b.Result) != build.Exception {
			t.Fatalf("a build whose step started: %s (%q), want exception", deref(b.Result), b.Reason)
		}
		b, _ = s.BuildByID(ctx, unreceived.Build.ID)
		if deref(b.Result) != build.Retry || !strings.Contains(b.Reason, "never received") {
			t.Fatalf("a build never received: %s (%q), want retry", deref(b.Result), b.Reason)
		}
		again, err := s.Claim(ctx, sess, "m1", 2)
		if err != nil || len(again) != 1 || again[0].Build.RetryOf == nil ||
			*again[0].Build.RetryOf != unreceived.Build.ID {
			t.Fatalf("claim after the retry: %+v, %v; want the retry of build %d", again, err, unreceived.Build.ID)
		}
	})
}

// A lost build links forward to the build that retries it, once that one
// has started, in a single build and in lists; the retry links back.
func TestLostBuildLinksForwardToItsRetry(t *testing.T) {
	eachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		st := state()
		st.Builders[1].RetryLost = true
		apply(t, s, st)
		force(t, s, "unit")
		cl, err := s.Claim(ctx, login(t, s, "w1", "pw1"), "m1", 1)
		if err != nil || len(cl) != 1 {
			t.Fatalf("claim: %v, %d", err, len(cl))
		}
		lost := cl[0].Build.ID
		if _, err := s.ExpireSessions(ctx, -1); err != nil {
			t.Fatal(err)
		}
		if b, err := s.BuildByID(ctx, lost); err != nil || b.RetriedBy != nil {
			t.Fatalf("lost build before its retry started: retried_by %v, %v; want none", b.RetriedBy, err)
		}

		cl, err = s.Claim(ctx, login(t, s, "w1", "pw1"), "m1", 1)
		if err != nil || len(cl) != 1 {
			t.Fatalf("claim the retry: %v, %d", err, len(cl))
		}
		retry := cl[0].Build.ID
		b, err := s.BuildByID(ctx, lost)
		if err != nil || b.RetriedBy == nil || *b.RetriedBy != retry {
			t.Fatalf("lost build: retried_by %v, %v; want %d", b.RetriedBy, err, retry)
		}
		list, err := s.Builds(ctx, store.BuildFilter{Builder: "unit"})
		if err != nil || len(list) != 2 {
			t.Fatalf("builds = %+v, %v", list, err)
		}
		if list[0].ID != retry || list[0].RetriedBy != nil || list[0].RetryOf == nil ||
			*list[0].RetryOf != lost || list[1].RetriedBy == nil || *list[1].RetriedBy != retry {
			t.Fatalf("listed builds link %v/%v and %v; want %d retrying %d", list[0].RetryOf,
				list[0].RetriedBy, list[1].RetriedBy, retry, lost)
		}
	})
}
