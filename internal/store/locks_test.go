package store_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/regent-ci/regent/internal/build"
	"github.com/regent-ci/regent/internal/config"
	"github.com/regent-ci/regent/internal/store"
	"github.com/regent-ci/regent/internal/testutil/pgtest"
)

// lockState has one worker per builder, so that each builder's requests
// are claimed by its own worker, and builders a, b and c sharing the lock
// "hw" with max holders; builder free has no lock.
func lockState(maxHolders int) *config.State {
	st := &config.State{Locks: []config.Lock{{Name: "hw", MaxHolders: maxHolders}}}
	for _, name := range []string{"a", "b", "c", "free"} {
		st.Workers = append(st.Workers, config.Worker{Name: "w" + name, Password: "pw", MaxBuilds: 4})
		b := config.Builder{Name: name, Workers: []string{"w" + name},
			Steps: []config.Step{{Kind: config.StepShell, Name: "run", Command: "true"}}}
		if name != "free" {
			b.Locks = []string{"hw"}
		}
		st.Builders = append(st.Builders, b)
	}
	return st
}

// claimOne claims at most one build for sess and returns its id, 0 for none.
func claimOne(t *testing.T, s *store.Store, sess store.Session) store.Claimed {
	t.Helper()
	cl, err := s.Claim(context.Background(), sess, "m1", 1)
	if err != nil {
		t.Fatalf("claim for %s: %v", sess.WorkerName, err)
	}
	if len(cl) == 0 {
		return store.Claimed{}
	}
	return cl[0]
}

func finish(t *testing.T, s *store.Store, c store.Claimed, result string) {
	t.Helper()
	if err := s.FinishBuild(context.Background(), c.Build.ID, c.AttemptToken, result, ""); err != nil {
		t.Fatalf("finish build %d: %v", c.Build.ID, err)
	}
}

func holders(t *testing.T, s *store.Store) []store.LockHolder {
	t.Helper()
	h, err := s.LockHolders(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestExclusiveBuilderLockIsHeldForTheBuild(t *testing.T) {
	eachStore(t, func(t *testing.T, s *store.Store) {
		apply(t, s, lockState(1))
		wa, wb := login(t, s, "wa", "pw"), login(t, s, "wb", "pw")
		wfree := login(t, s, "wfree", "pw")
		force(t, s, "a")
		force(t, s, "b")
		force(t, s, "free")

		ca := claimOne(t, s, wa)
		if ca.Build.ID == 0 {
			t.Fatal("a: nothing claimed with the lock free")
		}
		if h := holders(t, s); len(h) != 1 || h[0].BuildID != ca.Build.ID || h[0].Step != 0 {
			t.Fatalf("holders = %+v, want build %d", h, ca.Build.ID)
		}
		if c := claimOne(t, s, wb); c.Build.ID != 0 {
			t.Fatalf("b claimed build %d while a holds the lock", c.Build.ID)
		}
		if c := claimOne(t, s, wfree); c.Build.ID == 0 {
			t.Fatal("a builder without locks was held back")
		}
		finish(t, s, ca, build.Success)
		if h := holders(t, s); len(h) != 0 {
			t.Fatalf("holders after the build finished = %+v", h)
		}
		if c := claimOne(t, s, wb); c.Build.ID == 0 {
			t.Fatal("b: nothing claimed once the lock was released")
		}
	})
}

func TestCountingLockAdmitsMaxHolders(t *testing.T) {
	eachStore(t, func(t *testing.T, s *store.Store) {
		apply(t, s, lockState(2))
		wa, wb, wc := login(t, s, "wa", "pw"), login(t, s, "wb", "pw"), login(t, s, "wc", "pw")
		for _, b := range []string{"a", "a", "b", "c"} {
			force(t, s, b)
		}
		// wa may run four builds at once, but the lock admits two.
		cl, err := s.Claim(context.Background(), wa, "m1", 4)
		if err != nil || len(cl) != 2 {
			t.Fatalf("a claimed %d builds (%v), want 2", len(cl), err)
		}
		if c := claimOne(t, s, wb); c.Build.ID != 0 {
			t.Fatal("b got a third place in a lock of two")
		}
		finish(t, s, cl[0], build.Failure)
		if c := claimOne(t, s, wc); c.Build.ID != 0 {
			t.Fatal("c overtook b, which waits for the lock since earlier")
		}
		if c := claimOne(t, s, wb); c.Build.ID == 0 {
			t.Fatal("b: nothing claimed once a place was free")
		}
	})
}

// A later request of another builder never overtakes an earlier one that
// waits for the same lock; a waiter whose request was cancelled holds
// nobody back.
func TestLockWaitersAreServedInRequestOrder(t *testing.T) {
	eachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		apply(t, s, lockState(1))
		wa, wb, wc := login(t, s, "wa", "pw"), login(t, s, "wb", "pw"), login(t, s, "wc", "pw")
		force(t, s, "c")
		holder := claimOne(t, s, wc)
		rb := force(t, s, "b")  // earlier
		ra1 := force(t, s, "a") // later
		ra2 := force(t, s, "a")
		if c := claimOne(t, s, wb); c.Build.ID != 0 {
			t.Fatal("b claimed while c holds the lock")
		}
		finish(t, s, holder, build.Success)

		if c := claimOne(t, s, wa); c.Build.ID != 0 {
			t.Fatalf("a's later request overtook b's waiting one (build %d)", c.Build.ID)
		}
		cb := claimOne(t, s, wb)
		if cb.Build.RequestID != rb.Requests[0].ID {
			t.Fatalf("b claimed %+v, want request %d", cb.Build, rb.Requests[0].ID)
		}
		finish(t, s, cb, build.Success)

		// a's first request waits now; cancelling it lets the second pass.
		if err := s.CancelRequest(ctx, ra1.Requests[0].ID, "test"); err != nil {
			t.Fatal(err)
		}
		if c := claimOne(t, s, wa); c.Build.RequestID != ra2.Requests[0].ID {
			t.Fatalf("after the cancel a claimed request %d, want %d", c.Build.RequestID, ra2.Requests[0].ID)
		}
	})
}

// Locks are given back in the transaction that ends the build, however
// it ends: cancelled, its session closed, lost with its worker, or lost
// and retried.
func TestLocksAreReleasedWhenTheHolderEnds(t *testing.T) {
	cases := []struct {
		name  string
		retry bool
		end   func(t *testing.T, s *store.Store, sess store.Session, c store.Claimed)
	}{
		{"cancelled", false, func(t *testing.T, s *store.Store, _ store.Session, c store.Claimed) {
			if err := s.CancelBuild(context.Background(), c.Build.ID, "test"); err != nil {
				t.Fatal(err)
			}
			finish(t, s, c, build.Cancelled)
		}},
		{"session closed", false, func(t *testing.T, s *store.Store, sess store.Session, _ store.Claimed) {
			if err := s.CloseSession(context.Background(), sess.ID, "bye"); err != nil {
				t.Fatal(err)
			}
		}},
		{"lost", false, expireAll},
		{"lost and retried", true, expireAll},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			eachStore(t, func(t *testing.T, s *store.Store) {
				st := lockState(1)
				st.Builders[0].RetryLost = tc.retry
				apply(t, s, st)
				wa := login(t, s, "wa", "pw")
				force(t, s, "a")
				force(t, s, "b")
				ca := claimOne(t, s, wa)
				tc.end(t, s, wa, ca)
				if h := holders(t, s); len(h) != 0 {
					t.Fatalf("holders after the holder ended = %+v", h)
				}
				wb := login(t, s, "wb", "pw")
				if c := claimOne(t, s, wb); c.Build.ID == 0 {
					t.Fatal("b: nothing claimed after the lock was released")
				}
			})
		})
	}
}

func expireAll(t *testing.T, s *store.Store, _ store.Session, _ store.Claimed) {
	t.Helper()
	time.Sleep(2 * time.Millisecond)
	if _, err := s.ExpireSessions(context.Background(), time.Millisecond); err != nil {
		t.Fatal(err)
	}
}

func TestStepLocks(t *testing.T) {
	eachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		st := lockState(1)
		st.Locks = append(st.Locks, config.Lock{Name: "db", MaxHolders: 1})
		// free's second step needs db; b holds hw for its whole run and
		// names it on a step too.
		st.Builders[3].Steps = append(st.Builders[3].Steps,
			config.Step{Kind: config.StepShell, Name: "migrate", Command: "true", Locks: []string{"db"}})
		st.Builders[1].Steps[0].Locks = []string{"hw", "db"}
		apply(t, s, st)
		wfree, wb := login(t, s, "wfree", "pw"), login(t, s, "wb", "pw")
		force(t, s, "free")
		force(t, s, "b")
		cf := claimOne(t, s, wfree)
		cb := claimOne(t, s, wb)

		got, err := s.AcquireStepLocks(ctx, cf.Build.ID, cf.AttemptToken, 1)
		if err != nil || !got.Acquired {
			t.Fatalf("a step without locks: %+v, %v", got, err)
		}
		for range 2 { // the second time as after a lost answer
			got, err = s.AcquireStepLocks(ctx, cf.Build.ID, cf.AttemptToken, 2)
			if err != nil || !got.Acquired {
				t.Fatalf("free's step 2: %+v, %v", got, err)
			}
		}
		got, err = s.AcquireStepLocks(ctx, cb.Build.ID, cb.AttemptToken, 1)
		if err != nil || got.Acquired || got.Waiting != "db" {
			t.Fatalf("b's step while free's step holds db: %+v, %v, want waiting for db", got, err)
		}
		if _, err := s.AcquireStepLocks(ctx, cb.Build.ID, "stale", 1); err == nil {
			t.Fatal("a stale attempt acquired locks")
		}

		// Finishing the step gives its locks back, even without a release.
		if err := s.StartStep(ctx, cf.Build.ID, cf.AttemptToken, 2, "migrate"); err != nil {
			t.Fatal(err)
		}
		if err := s.FinishStep(ctx, cf.Build.ID, cf.AttemptToken, 2, build.Success, "", nil, 0); err != nil {
			t.Fatal(err)
		}
		got, err = s.AcquireStepLocks(ctx, cb.Build.ID, cb.AttemptToken, 1)
		if err != nil || !got.Acquired {
			t.Fatalf("b's step once db was free: %+v, %v", got, err)
		}
		if err := s.ReleaseStepLocks(ctx, cb.Build.ID, cb.AttemptToken, 1); err != nil {
			t.Fatal(err)
		}
		h := holders(t, s)
		if len(h) != 1 || h[0].Lock != "hw" || h[0].Step != 0 {
			t.Fatalf("holders after the step's release = %+v, want b's build-long hw only", h)
		}
		finish(t, s, cb, build.Success)
		if err := s.ReleaseStepLocks(ctx, cb.Build.ID, cb.AttemptToken, 1); err != nil {
			t.Fatalf("release after the build ended: %v", err)
		}
	})
}

// C20: two builders dispatched through two masters share a lock of one
// holder; ten builds each are queued and claimed by concurrent workers.
// At no moment do two builds hold the lock. Each store handle stands for a
// master; the claims race on one PostgreSQL database.
func TestLockAcrossMastersC20(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t)
	ctx := context.Background()
	masters := make([]*store.Store, 2)
	for i := range masters {
		s, err := store.Open(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		masters[i] = s
	}
	// Four workers per builder, half of them on each master.
	st := lockState(1)
	var names []string
	for i := range 4 {
		for j, b := range []string{"a", "b"} {
			w := fmt.Sprintf("w%s%d", b, i)
			st.Workers = append(st.Workers, config.Worker{Name: w, Password: "pw", MaxBuilds: 2})
			st.Builders[j].Workers = append(st.Builders[j].Workers, w)
			names = append(names, w)
		}
	}
	apply(t, masters[0], st)
	for range 10 {
		force(t, masters[0], "a")
		force(t, masters[1], "b")
	}

	var active, done, maxActive atomic.Int32
	var wg sync.WaitGroup
	for i, w := range names {
		s := masters[i%2]
		sess := login(t, s, w, "pw")
		wg.Add(1)
		go func() {
			defer wg.Done()
			deadline := time.Now().Add(60 * time.Second)
			for done.Load() < 20 && time.Now().Before(deadline) {
				cl, err := s.Claim(ctx, sess, fmt.Sprint("m", i%2), 2)
				if err != nil {
					t.Error(err)
					return
				}
				if len(cl) == 0 {
					time.Sleep(time.Millisecond)
					continue
				}
				n := active.Add(int32(len(cl)))
				for m := maxActive.Load(); n > m && !maxActive.CompareAndSwap(m, n); {
					m = maxActive.Load()
				}
				time.Sleep(2 * time.Millisecond)
				for _, c := range cl {
					active.Add(-1)
					if err := s.FinishBuild(ctx, c.Build.ID, c.AttemptToken, build.Success, ""); err != nil {
						t.Error(err)
					}
					done.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if done.Load() != 20 {
		t.Fatalf("%d builds ran, want 20", done.Load())
	}
	if maxActive.Load() != 1 {
		t.Fatalf("at most %d builds held the lock at once, want 1", maxActive.Load())
	}
}

// A waiter that nothing tries for any more (its worker went away) stops
// holding later requests back once it has not been refreshed for a few
// seconds.
func TestStaleLockWaiterHoldsNobodyBack(t *testing.T) {
	eachStore(t, func(t *testing.T, s *store.Store) {
		apply(t, s, lockState(1))
		wa, wb, wc := login(t, s, "wa", "pw"), login(t, s, "wb", "pw"), login(t, s, "wc", "pw")
		force(t, s, "c")
		holder := claimOne(t, s, wc)
		force(t, s, "b")
		force(t, s, "a")
		if c := claimOne(t, s, wb); c.Build.ID != 0 {
			t.Fatal("b claimed while c holds the lock")
		}
		finish(t, s, holder, build.Success)
		if c := claimOne(t, s, wa); c.Build.ID != 0 {
			t.Fatal("a overtook b's fresh wait")
		}
		// wb never polls again.
		deadline := time.Now().Add(15 * time.Second)
		for claimOne(t, s, wa).Build.ID == 0 {
			if time.Now().After(deadline) {
				t.Fatal("a is still held back by b's abandoned wait")
			}
			time.Sleep(250 * time.Millisecond)
		}
	})
}
