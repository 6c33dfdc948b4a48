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
