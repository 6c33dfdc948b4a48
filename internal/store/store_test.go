package store_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/regent-ci/regent/internal/build"
	"github.com/regent-ci/regent/internal/config"
	"github.com/regent-ci/regent/internal/store"
	"github.com/regent-ci/regent/internal/testutil/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// eachStore runs fn against a fresh SQLite store and a fresh PostgreSQL
// store, so that both implementations answer to the same tests.
func eachStore(t *testing.T, fn func(t *testing.T, s *store.Store)) {
	t.Helper()
	open := map[string]func(t *testing.T) string{
		"sqlite":   func(t *testing.T) string { return filepath.Join(t.TempDir(), "regent.db") },
		"postgres": func(t *testing.T) string { return pgtest.URL(t) },
	}
	for _, name := range []string{"sqlite", "postgres"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s, err := store.Open(context.Background(), open[name](t))
			if err != nil {
				t.Fatalf("open %s store: %v", name, err)
			}
			t.Cleanup(func() { s.Close() })
			fn(t, s)
		})
	}
}

// state returns a small desired state, builders sorted by name (deploy,
// unit); callers adjust it per test.
func state() *config.State {
	return &config.State{
		Workers: []config.Worker{{Name: "w1", Password: "pw1", MaxBuilds: 2}},
		Builders: []config.Builder{
			{Name: "deploy", Workers: []string{"w1"}, Steps: []config.Step{{Kind: config.StepShell, Name: "ship", Command: "true"}}},
			{Name: "unit", Workers: []string{"w1"}, Steps: []config.Step{{Kind: config.StepShell, Name: "test", Command: "true"}}},
		},
	}
}

func apply(t *testing.T, s *store.Store, st *config.State) store.ApplyResult {
	t.Helper()
	res, err := s.Apply(context.Background(), st, "test", "tester")
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	return res
}

func builderNames(t *testing.T, s *store.Store, retired bool) []string {
	t.Helper()
	bs, err := s.Builders(context.Background(), retired)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, b := range bs {
		names = append(names, b.Name)
	}
	return names
}

func force(t *testing.T, s *store.Store, builder string) store.Buildset {
	t.Helper()
	bs, _, err := s.CreateBuildset(context.Background(), store.BuildsetInput{
		Reason: "test", Scheduler: "force", Builders: []string{builder}})
	if err != nil {
		t.Fatalf("force %s: %v", builder, err)
	}
	return bs
}

// runBuild claims one request as worker w1 and finishes it with result.
func runBuild(t *testing.T, s *store.Store, sess store.Session, result string) store.Claimed {
	t.Helper()
	ctx := context.Background()
	cl, err := s.Claim(ctx, sess, "m1", 1)
	if err != nil || len(cl) != 1 {
		t.Fatalf("claim: %v (%d claimed)", err, len(cl))
	}
	id, tok := cl[0].Build.ID, cl[0].AttemptToken
	if err := s.StartStep(ctx, id, tok, 1, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendLog(ctx, id, tok, 1, 0, []byte("ok\n")); err != nil {
		t.Fatal(err)
	}
	if err := s.FinishStep(ctx, id, tok, 1, result, "", nil, 3); err != nil {
		t.Fatal(err)
	}
	if err := s.FinishBuild(ctx, id, tok, result, ""); err != nil {
		t.Fatal(err)
	}
	// A finish resent after a lost answer is accepted and changes nothing.
	if err := s.FinishBuild(ctx, id, tok, result, ""); err != nil {
		t.Fatalf("resent finish: %v", err)
	}
	return cl[0]
}

func login(t *testing.T, s *store.Store, worker, pw string) store.Session {
	t.Helper()
	sess, _, err := s.OpenSession(context.Background(), worker, pw, "m1", "127.0.0.1")
	if err != nil {
		t.Fatalf("login %s: %v", worker, err)
	}
	return sess
}

func TestApplySameContentTwiceMakesOneGeneration(t *testing.T) {
	eachStore(t, func(t *testing.T, s *store.Store) {
		first := apply(t, s, state())
		second := apply(t, s, state())
		if !first.Created || second.Created || second.Generation.Number != first.Generation.Number {
			t.Fatalf("first %+v second %+v: want one generation", first, second)
		}
		changed := state()
		changed.Workers[0].Password = "new"
		if third := apply(t, s, changed); !third.Created || third.Generation.Number != 2 {
			t.Fatalf("a new password must make generation 2, got %+v", third)
		}
	})
}

// Field case C01: a declared rename keeps history under the new name; an
// undeclared one retires the old builder and starts a fresh one.
func TestRenameKeepsHistoryC01(t *testing.T) {
	eachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		apply(t, s, state())
		sess := login(t, s, "w1", "pw1")
		for range 3 {
			force(t, s, "unit")
			runBuild(t, s, sess, build.Success)
		}
		renamed := state()
		renamed.Builders[1].Name, renamed.Builders[1].PreviousNames = "unit-tests", []string{"unit"}
		apply(t, s, renamed)

		if got := builderNames(t, s, false); !equal(got, []string{"deploy", "unit-tests"}) {
			t.Fatalf("active builders = %v", got)
		}
		if got := builderNames(t, s, true); !equal(got, []string{"deploy", "unit-tests"}) {
			t.Fatalf("with retired = %v, want no separate unit", got)
		}
		builds, err := s.Builds(ctx, store.BuildFilter{Builder: "unit-tests"})
		if err != nil || len(builds) != 3 {
			t.Fatalf("unit-tests builds = %d (%v), want the 3 old ones", len(builds), err)
		}

		// Neighbour: renaming again without previous_names retires.
		again := state()
		again.Builders[1].Name = "unit-fast"
		apply(t, s, again)
		if got := builderNames(t, s, false); !equal(got, []string{"deploy", "unit-fast"}) {
			t.Fatalf("active builders = %v", got)
		}
		if got := builderNames(t, s, true); !equal(got, []string{"deploy", "unit-fast", "unit-tests"}) {
			t.Fatalf("with retired = %v", got)
		}
		old, _ := s.Builds(ctx, store.BuildFilter{Builder: "unit-tests"})
		fresh, _ := s.Builds(ctx, store.BuildFilter{Builder: "unit-fast"})
		if len(old) != 3 || len(fresh) != 0 {
			t.Fatalf("retired keeps %d builds, fresh has %d; want 3 and 0", len(old), len(fresh))
		}
	})
}

// Field case C02, in the store: removing a builder cancels its pending
// requests with a reason naming the removal.
func TestRemovalCancelsPendingRequestsC02(t *testing.T) {
	eachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		apply(t, s, state())
		for range 5 {
			force(t, s, "deploy")
		}
		without := state()
		without.Builders = without.Builders[1:] // drop deploy
		res := apply(t, s, without)
		if res.CancelledRequests != 5 {
			t.Fatalf("cancelled %d requests, want 5", res.CancelledRequests)
		}
		reqs, err := s.Requests(ctx, store.RequestFilter{Builder: "deploy"})
		if err != nil || len(reqs) != 5 {
			t.Fatalf("requests: %v %d", err, len(reqs))
		}
		for _, r := range reqs {
			if r.State != store.RequestCancelled || !bytes.Contains([]byte(r.Reason), []byte(`"deploy" was removed`)) {
				t.Fatalf("request %d: state %s reason %q", r.ID, r.State, r.Reason)
			}
		}
		sess := login(t, s, "w1", "pw1")
		if cl, err := s.Claim(ctx, sess, "m1", 5); err != nil || len(cl) != 0 {
			t.Fatalf("claimed %d requests of a removed builder (%v)", len(cl), err)
		}
		if got := builderNames(t, s, false); !equal(got, []string{"unit"}) {
			t.Fatalf("active builders = %v", got)
		}
	})
}

func TestPasswordChangeRevokesSessions(t *testing.T) {
	eachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		apply(t, s, state())
		_, token, err := s.OpenSession(ctx, "w1", "pw1", "m1", "h")
		if err != nil {
			t.Fatal(err)
		}
		changed := state()
		changed.Workers[0].Password = "pw2"
		if res := apply(t, s, changed); res.RevokedSessions != 1 {
			t.Fatalf("revoked %d sessions, want 1", res.RevokedSessions)
		}
		sess, err := s.SessionByToken(ctx, token)
		if err != nil || sess.State != store.SessionRevoked {
			t.Fatalf("old session state %q (%v), want revoked", sess.State, err)
		}
		if _, _, err := s.OpenSession(ctx, "w1", "pw1", "m1", "h"); !errors.Is(err, store.ErrBadCredentials) {
			t.Fatalf("old password: %v, want ErrBadCredentials", err)
		}
		login(t, s, "w1", "pw2")
	})
}

func TestNewSessionSupersedesOldAndEndsItsBuilds(t *testing.T) {
	eachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		apply(t, s, state())
		old := login(t, s, "w1", "pw1")
		force(t, s, "unit")
		cl, err := s.Claim(ctx, old, "m1", 1)
		if err != nil || len(cl) != 1 {
			t.Fatalf("claim: %v", err)
		}
		login(t, s, "w1", "pw1")
		b, err := s.BuildByID(ctx, cl[0].Build.ID)
		if err != nil {
			t.Fatal(err)
		}
		if b.State != build.StateFinished || b.Result == nil || *b.Result != build.Exception ||
			!bytes.Contains([]byte(b.Reason), []byte("new session")) {
			t.Fatalf("old session's build: state %s result %v reason %q", b.State, b.Result, b.Reason)
		}
		err = s.StartStep(ctx, b.ID, cl[0].AttemptToken, 1, "x")
		if !errors.Is(err, store.ErrStaleAttempt) {
			t.Fatalf("write with the old attempt: %v, want ErrStaleAttempt", err)
		}
		ws, _ := s.Workers(ctx, false)
		if len(ws) != 1 || ws[0].State != store.WorkerIdle {
			t.Fatalf("workers = %+v, want w1 once, idle", ws)
		}
	})
}

// runningBuildThatRetriesLost applies the small state with builder unit
// retrying lost builds, and returns the id of a build of unit running on
// worker w1.
func runningBuildThatRetriesLost(t *testing.T, s *store.Store) int64 {
	t.Helper()
	st := state()
	st.Builders[1].RetryLost = true
	apply(t, s, st)
	sess := login(t, s, "w1", "pw1")
	force(t, s, "unit")
	cl, err := s.Claim(context.Background(), sess, "m1", 1)
	if err != nil || len(cl) != 1 {
		t.Fatalf("claim: %v, %d builds; want one", err, len(cl))
	}
	return cl[0].Build.ID
}

func TestLostBuildIsRetriedAsLinkedBuild(t *testing.T) {
	eachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		lost := runningBuildThatRetriesLost(t, s)
		if _, err := s.ExpireSessions(ctx, -1); err != nil {
			t.Fatal(err)
		}
		b, _ := s.BuildByID(ctx, lost)
		if b.Result == nil || *b.Result != build.Retry {
			t.Fatalf("lost build result %v, want retry", deref(b.Result))
		}
		again := login(t, s, "w1", "pw1")
		cl2, _ := s.Claim(ctx, again, "m1", 1)
		if len(cl2) != 1 || cl2[0].Build.RetryOf == nil || *cl2[0].Build.RetryOf != lost || !cl2[0].Clean {
			t.Fatalf("retry = %+v, want a clean build linked to %d", cl2, lost)
		}
		if cl2[0].Build.Number != b.Number+1 {
			t.Fatalf("retry number %d, want %d", cl2[0].Build.Number, b.Number+1)
		}
	})
}

// Found by the chaos campaign (seed 888): a build of a builder that an
// apply removed while the build ran was lost and requeued, and its request
// stayed pending for ever, since nothing claims a removed builder's
// requests. It ends with an exception naming the removal instead, and no
// request is left pending.
func TestLostBuildOfARemovedBuilderIsNotRetried(t *testing.T) {
	eachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		lost := runningBuildThatRetriesLost(t, s)
		without := state()
		without.Builders = without.Builders[:1]
		apply(t, s, without)
		if _, err := s.ExpireSessions(ctx, -1); err != nil {
			t.Fatal(err)
		}
		b, _ := s.BuildByID(ctx, lost)
		if b.Result == nil || *b.Result != build.Exception || !strings.Contains(b.Reason, `"unit" was removed`) {
			t.Fatalf("lost build of a removed builder: %v (%q), want exception naming the removal",
				deref(b.Result), b.Reason)
		}
		pending, err := s.Requests(ctx, store.RequestFilter{State: store.RequestPending, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(pending) != 0 {
			t.Fatalf("pending requests %+v after the loss, want none", pending)
		}
	})
}

func TestConcurrentClaimsNeverShareARequest(t *testing.T) {
	eachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		st := state()
		for i := range 8 {
			st.Workers = append(st.Workers, config.Worker{Name: "c" + string(rune('a'+i)), Password: "p", MaxBuilds: 3})
			st.Builders[1].Workers = append(st.Builders[1].Workers, "c"+string(rune('a'+i)))
		}
		apply(t, s, st)
		for range 20 {
			force(t, s, "unit")
		}
		var mu sync.Mutex
		seen := map[int64]int{}
		var wg sync.WaitGroup
		for i := range 8 {
			sess := login(t, s, "c"+string(rune('a'+i)), "p")
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Claim until this worker is full or nothing is pending.
				for got := 0; got < 3; {
					cl, err := s.Claim(ctx, sess, "m1", 1)
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					for _, c := range cl {
						seen[c.Build.RequestID]++
					}
					mu.Unlock()
					got += len(cl)
					if len(cl) == 0 {
						pending, err := s.Requests(ctx, store.RequestFilter{State: store.RequestPending})
						if err != nil || len(pending) == 0 {
							return
						}
					}
				}
			}()
		}
		wg.Wait()
		if len(seen) != 20 {
			t.Fatalf("%d distinct requests claimed, want all 20", len(seen))
		}
		for id, n := range seen {
			if n != 1 {
				t.Fatalf("request %d claimed %d times", id, n)
			}
		}
	})
}

func TestLogAppendIsIdempotentAndExact(t *testing.T) {
	eachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		apply(t, s, state())
		sess := login(t, s, "w1", "pw1")
		force(t, s, "unit")
		cl, _ := s.Claim(ctx, sess, "m1", 1)
		id, tok := cl[0].Build.ID, cl[0].AttemptToken
		if err := s.StartStep(ctx, id, tok, 1, "test"); err != nil {
			t.Fatal(err)
		}
		want := append([]byte("abc\xff\xfe\n"), bytes.Repeat([]byte("x"), 100000)...)
		appends := []struct {
			off  int64
			data []byte
		}{{0, want[:10]}, {0, want[:10]}, {5, want[5:50]}, {50, want[50:]}, {20, want[20:30]}}
		for _, a := range appends {
			if _, err := s.AppendLog(ctx, id, tok, 1, a.off, a.data); err != nil {
				t.Fatalf("append at %d: %v", a.off, err)
			}
		}
		if _, err := s.AppendLog(ctx, id, tok, 1, int64(len(want))+1, []byte("gap")); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("append past the end: %v, want ErrConflict", err)
		}
		if err := s.FinishStep(ctx, id, tok, 1, build.Success, "", nil, int64(len(want))+5); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("finish with missing bytes: %v, want ErrConflict", err)
		}
		var got bytes.Buffer
		if _, err := s.WriteLog(ctx, &got, id, 1, 0, -1); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want) {
			t.Fatalf("log has %d bytes, want %d identical", got.Len(), len(want))
		}
		var part bytes.Buffer
		s.WriteLog(ctx, &part, id, 1, 3, 7)
		if part.String() != "\xff\xfe\nx" {
			t.Fatalf("range 3..7 = %q", part.String())
		}
	})
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func deref(p *string) string {
	if p == nil {
		return "<nil>"
	}
	return *p
}

// Removing a connected worker ends its running builds at once, with the
// reason, instead of leaving them running until its session expires.
func TestRemovedWorkerBuildsEndAtApply(t *testing.T) {
	eachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		st := state()
		st.Workers = append(st.Workers, config.Worker{Name: "w2", Password: "p", MaxBuilds: 1})
		apply(t, s, st)
		sess := login(t, s, "w1", "pw1")
		force(t, s, "unit")
		cl, _ := s.Claim(ctx, sess, "m1", 1)
		if len(cl) != 1 {
			t.Fatal("nothing claimed")
		}
		without := state()
		without.Workers = []config.Worker{{Name: "w2", Password: "p", MaxBuilds: 1}}
		for i := range without.Builders {
			without.Builders[i].Workers = []string{"w2"}
		}
		apply(t, s, without)
		b, _ := s.BuildByID(ctx, cl[0].Build.ID)
		if b.State != build.StateFinished || deref(b.Result) != build.Exception ||
			!bytes.Contains([]byte(b.Reason), []byte(`"w1" was removed`)) {
			t.Fatalf("build of the removed worker: %s %s %q", b.State, deref(b.Result), b.Reason)
		}
	})
}
