package changes

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/regent-ci/regent/internal/store"
	"github.com/regent-ci/regent/internal/testutil/pgtest"
)

// slowTransport makes a poller reach its remote through a stand-in for
// ssh that, while the file it returns exists, signals that it started
// (writing its pid to started) and sleeps before serving the fetch. It
// changes the poller's URL to an ssh:// URL that the stand-in serves
// from the local remote; nothing goes over the network.
func slowTransport(t *testing.T, h *harness, c *PollerConfig) (slow, started string) {
	t.Helper()
	dir := t.TempDir()
	slow, started = filepath.Join(dir, "slow"), filepath.Join(dir, "started")
	script := filepath.Join(dir, "slow-ssh")
	// Called as: slow-ssh HOST "git-upload-pack '/path'".
	body := fmt.Sprintf(`#!/bin/sh
if [ -e %[1]q ]; then
	echo $$ > %[2]q.tmp && mv %[2]q.tmp %[2]q
	sleep 60
fi
exec sh -c "git upload-pack ${2#git-upload-pack }"
`, slow, started)
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	c.Repo.URL = "ssh://regent.invalid" + h.remote.bare
	c.GitEnv = []string{"GIT_SSH_COMMAND=" + script, "GIT_SSH_VARIANT=simple"}
	return slow, started
}

// startedPID waits for the slow transport to start and returns its pid.
func startedPID(t *testing.T, started string) int {
	t.Helper()
	var pid int
	waitFor(t, 10*time.Second, "the slow fetch to start", func() bool {
		b, err := os.ReadFile(started)
		if err != nil {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	})
	return pid
}

// waitGone waits until the process pid has ended. A process that ended
// but that nobody reaped yet (a zombie, whose parent was killed with it)
// counts as ended.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	waitFor(t, 10*time.Second, fmt.Sprintf("process %d to end", pid), func() bool {
		if stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
			// The state follows the command name, which is in parentheses.
			_, rest, _ := strings.Cut(string(stat), ") ")
			return strings.HasPrefix(rest, "Z")
		}
		return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
	})
}

// TestCancelledSlowFetchC04 is field case C04 for the poller: a poll whose
// fetch is slow is cancelled (as a reconfiguration does); git and what it
// started are killed at once, no error is reported, and the same mirror
// polls normally afterwards.
func TestCancelledSlowFetchC04(t *testing.T) {
	t.Parallel()
	var slow, started string
	h := newHarness(t, nil)
	h.poller = h.newPoller(h.store, func(c *PollerConfig) { slow, started = slowTransport(t, h, c) })
	h.poll()

	if err := os.WriteFile(slow, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- h.poller.PollNow(ctx) }()
	pid := startedPID(t, started)
	begin := time.Now()
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled poll returned %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("cancelled poll did not return within 10s")
	}
	t.Logf("cancelled poll returned after %v", time.Since(begin))
	waitGone(t, pid)
	if hl := h.poller.Health(); hl.LastError != "" {
		t.Fatalf("a cancelled poll was reported as an error: %+v", hl)
	}

	os.Remove(slow)
	rev := h.remote.commit("after the cancelled poll", nil)
	h.remote.push()
	h.poll()
	if got := refsOf(h.taken()); !reflect.DeepEqual(got, on("main", rev)) {
		t.Fatalf("changes after a cancelled poll = %v, want %v", got, on("main", rev))
	}
}

// TestStopDuringSlowFetchThenNewPollerC04 replays a reconfiguration in
// the middle of a slow poll: the running poller is stopped and a new one
// takes over the same directory, and the next commit is recorded.
func TestStopDuringSlowFetchThenNewPollerC04(t *testing.T) {
	t.Parallel()
	var slow, started string
	h := newHarness(t, nil)
	dir := t.TempDir()
	old := h.newPoller(h.store, func(c *PollerConfig) {
		slow, started = slowTransport(t, h, c)
		c.Dir = dir
	})
	if err := os.WriteFile(slow, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := old.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	pid := startedPID(t, started)

	stopped := make(chan struct{})
	go func() { old.Stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("Stop did not return within 10s of a slow fetch")
	}
	waitGone(t, pid)

	h.poller = h.newPoller(h.store, func(c *PollerConfig) { c.Dir = dir })
	h.poll()
	rev := h.remote.commit("after the reconfiguration", nil)
	h.remote.push()
	h.poll()
	if got := refsOf(h.taken()); !reflect.DeepEqual(got, on("main", rev)) {
		t.Fatalf("changes = %v, want %v", got, on("main", rev))
	}
}

// TestStaleLocksInMirrorAreRemoved covers a git killed while it held ref
// locks (a crashed master): the next poll is not blocked by them.
func TestStaleLocksInMirrorAreRemoved(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.poll()
	for _, name := range []string{"refs/heads/main.lock", "packed-refs.lock", "objects/pack/tmp_pack_x"} {
		if err := os.WriteFile(filepath.Join(h.poller.cfg.Dir, "mirror.git", name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rev := h.remote.commit("next", nil)
	h.remote.push()
	h.poll()
	if got := refsOf(h.taken()); !reflect.DeepEqual(got, on("main", rev)) {
		t.Fatalf("changes = %v, want %v", got, on("main", rev))
	}
}

// TestTwoPollersRecordEachChangeOnce checks invariant 5: pollers of one
// repository on two masters, sharing the database and polling at the
// same moment, record each commit once between them.
func TestTwoPollersRecordEachChangeOnce(t *testing.T) {
	t.Parallel()
	for _, db := range []string{"sqlite", "postgres"} {
		t.Run(db, func(t *testing.T) {
			t.Parallel()
			dsn := ""
			if db == "postgres" {
				dsn = pgtest.URL(t)
			}
			h := &harness{t: t, remote: newTestRemote(t), store: openStore(t, dsn)}
			pollers := []*Poller{h.newPoller(h.store, nil), h.newPoller(h.store, nil)}
			h.poller = pollers[0]
			h.poll()

			var revs []string
			for round := range 3 {
				for i := range 4 {
					revs = append(revs, h.remote.commit(fmt.Sprintf("round %d commit %d", round, i), nil))
				}
				h.remote.push()
				var wg sync.WaitGroup
				for _, p := range pollers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						if err := p.PollNow(context.Background()); err != nil {
							t.Errorf("poll: %v", err)
						}
					}()
				}
				wg.Wait()
			}

			want := on("main", revs...)
			if got := refsOf(h.stored()); !reflect.DeepEqual(got, want) {
				t.Fatalf("stored changes = %v, want %v", got, want)
			}
			got := h.taken()
			if len(got) != len(revs) {
				t.Fatalf("pollers reported %d new changes between them, want %d", len(got), len(revs))
			}
			ids := map[int64]bool{}
			for _, c := range got {
				ids[c.ID] = true
			}
			if len(ids) != len(revs) {
				t.Fatalf("pollers reported %d distinct changes, want %d", len(ids), len(revs))
			}
		})
	}
}

// TestChangeStoreIsSatisfiedByStore keeps the interface and the store in
// step.
func TestChangeStoreIsSatisfiedByStore(t *testing.T) {
	var _ ChangeStore = (*store.Store)(nil)
}

// TestPushThenReconfigureC13 is field case C13 for the poller: a commit
// pushed while one poller is replaced by another (a new generation, or a
// new owner on another master with an empty cache) is recorded once, by
// whichever polls first, and a late poll of the old one adds nothing.
func TestPushThenReconfigureC13(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	old := h.poller
	h.poll()
	rev := h.remote.commit("pushed before the reconfiguration", nil)
	h.remote.push()

	h.poller = h.newPoller(h.store, nil)
	h.poll()
	h.poller = old
	h.poll()
	if got := refsOf(h.stored()); !reflect.DeepEqual(got, on("main", rev)) {
		t.Fatalf("stored changes = %v, want %v once", got, on("main", rev))
	}
	if got := refsOf(h.taken()); !reflect.DeepEqual(got, on("main", rev)) {
		t.Fatalf("reported changes = %v, want %v once", got, on("main", rev))
	}
}
