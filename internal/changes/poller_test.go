package changes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/regent-ci/regent/internal/config"
	"github.com/regent-ci/regent/internal/store"
	"github.com/regent-ci/regent/internal/testutil/pgtest"
)

// TestMain checks, after all tests, that no poller left a goroutine
// running.
func TestMain(m *testing.M) {
	code := pgtest.Main(m)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "leaked goroutines: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// harness is a poller under test with what it polls and records into.
type harness struct {
	t      *testing.T
	remote *testRemote
	store  *store.Store
	poller *Poller

	mu      sync.Mutex
	changes []store.Change // as passed to OnChanges
}

// openStore opens a fresh store: SQLite, or PostgreSQL when dsn says so.
func openStore(t *testing.T, dsn string) *store.Store {
	t.Helper()
	if dsn == "" {
		dsn = filepath.Join(t.TempDir(), "regent.db")
	}
	s, err := store.Open(context.Background(), dsn)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// newHarness makes a remote, a SQLite store and a poller of the remote's
// main branch; edit adjusts the poller's configuration.
func newHarness(t *testing.T, edit func(*PollerConfig)) *harness {
	t.Helper()
	h := &harness{t: t, remote: newTestRemote(t), store: openStore(t, "")}
	h.poller = h.newPoller(h.store, edit)
	return h
}

// newPoller makes another poller of the harness's remote, with a
// directory of its own, recording into s.
func (h *harness) newPoller(s ChangeStore, edit func(*PollerConfig)) *Poller {
	h.t.Helper()
	cfg := PollerConfig{
		Repo: config.Repo{
			Name:         "app",
			URL:          h.remote.URL(),
			Branches:     []string{"main"},
			PollInterval: config.Duration(time.Hour),
		},
		Store:  s,
		Dir:    h.t.TempDir(),
		Logger: slog.New(slog.DiscardHandler),
		OnChanges: func(cs []store.Change) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.changes = append(h.changes, cs...)
		},
	}
	if edit != nil {
		edit(&cfg)
	}
	p, err := NewPoller(cfg)
	if err != nil {
		h.t.Fatalf("new poller: %v", err)
	}
	h.t.Cleanup(p.Stop)
	return p
}

// poll polls once and fails the test on error.
func (h *harness) poll() {
	h.t.Helper()
	if err := h.poller.PollNow(context.Background()); err != nil {
		h.t.Fatalf("poll: %v", err)
	}
}

// taken returns the changes passed to OnChanges since the last call.
func (h *harness) taken() []store.Change {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := h.changes
	h.changes = nil
	return out
}

// heads returns the heads recorded for the repository.
func (h *harness) heads() map[string]string {
	h.t.Helper()
	heads, err := h.store.RepoHeads(context.Background(), "app")
	if err != nil {
		h.t.Fatal(err)
	}
	return heads
}

// stored returns every recorded change, oldest first.
func (h *harness) stored() []store.Change {
	h.t.Helper()
	all, err := h.store.Changes(context.Background(), store.ListOptions{Limit: 1000})
	if err != nil {
		h.t.Fatal(err)
	}
	slices.Reverse(all)
	return all
}

// refsOf renders changes as branch@revision.
func refsOf(cs []store.Change) []string {
	out := []string{}
	for _, c := range cs {
		out = append(out, c.Branch+"@"+c.Revision)
	}
	return out
}

// on renders revisions on branch as branch@revision.
func on(branch string, revs ...string) []string {
	out := []string{}
	for _, r := range revs {
		out = append(out, branch+"@"+r)
	}
	return out
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestFirstPollRecordsHeadsWithoutChanges(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *PollerConfig) { c.Repo.Branches = nil })
	h.remote.commit("second", map[string]string{"a": "1"})
	h.remote.push()
	h.remote.git("checkout", "--quiet", "-b", "dev")
	dev := h.remote.commit("on dev", nil)
	h.remote.push()
	main := h.remote.git("rev-parse", "main")

	h.poll()
	if got := h.stored(); len(got) != 0 {
		t.Fatalf("first poll recorded changes %v, want none", refsOf(got))
	}
	want := map[string]string{"refs/heads/main": main, "refs/heads/dev": dev}
	if got := h.heads(); !reflect.DeepEqual(got, want) {
		t.Fatalf("heads = %v, want %v", got, want)
	}
	if hl := h.poller.Health(); hl.LastSuccess.IsZero() || hl.Failing() {
		t.Fatalf("health after a good poll = %+v", hl)
	}

	h.poll()
	if got := h.stored(); len(got) != 0 {
		t.Fatalf("second poll without pushes recorded %v", refsOf(got))
	}
}

func TestOneCommitMakesOneChangeWithAllFields(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.remote.commit("add files", map[string]string{"old.txt": "old\n", "gone.txt": "x\n"})
	h.remote.push()
	h.poll()
	h.taken()

	h.remote.git("mv", "old.txt", "new.txt")
	message := "Rework the parser\n\nLonger explanation,\nover two lines."
	rev := h.remote.commit(message, map[string]string{
		"dir/with space.go": "package x\n",
		"gone.txt":          "",
		"caf\xe9.txt":       "latin-1 name\n",
	})
	h.remote.push()
	h.poll()

	got := h.taken()
	if len(got) != 1 {
		t.Fatalf("changes = %v, want one", refsOf(got))
	}
	want := store.Change{
		ID:         got[0].ID,
		Repository: "app",
		Branch:     "main",
		Revision:   rev,
		Author:     "Ada Lovelace <ada@example.com>",
		Comments:   message,
		Files:      []string{"caf\uFFFD.txt", "dir/with space.go", "gone.txt", "new.txt", "old.txt"},
		When:       commitTime(3),
		CreatedAt:  got[0].CreatedAt,
	}
	if !reflect.DeepEqual(got[0], want) {
		t.Fatalf("change =\n%+v\nwant\n%+v", got[0], want)
	}
	if stored := h.stored(); len(stored) != 1 || !reflect.DeepEqual(stored[0], want) {
		t.Fatalf("stored changes = %+v, want the one passed to OnChanges", stored)
	}
	if got := h.heads()["refs/heads/main"]; got != rev {
		t.Fatalf("recorded head = %s, want %s", got, rev)
	}
}

func TestCommitsBecomeChangesOldestFirst(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.poll()

	var revs []string
	for i := range 3 {
		revs = append(revs, h.remote.commit(fmt.Sprintf("commit %d", i), map[string]string{"f": fmt.Sprint(i)}))
	}
	h.remote.push()
	h.poll()
	if got := refsOf(h.taken()); !reflect.DeepEqual(got, on("main", revs...)) {
		t.Fatalf("changes = %v, want %v", got, on("main", revs...))
	}

	// A merge brings the merged commits and the merge itself; the
	// merge's files are those it changes against the branch it joins.
	h.remote.git("checkout", "--quiet", "-b", "topic", "HEAD~1")
	topic := h.remote.commit("topic work", map[string]string{"topic.txt": "t\n"})
	h.remote.git("checkout", "--quiet", "main")
	h.remote.tick++
	h.remote.git("merge", "--quiet", "--no-ff", "-m", "Merge topic", "topic")
	merge := h.remote.git("rev-parse", "HEAD")
	h.remote.push()
	h.poll()
	got := h.taken()
	if !reflect.DeepEqual(refsOf(got), on("main", topic, merge)) {
		t.Fatalf("changes after merge = %v, want %v", refsOf(got), on("main", topic, merge))
	}
	if files := got[1].Files; !reflect.DeepEqual(files, []string{"topic.txt"}) {
		t.Fatalf("merge files = %v, want [topic.txt]", files)
	}
}

// TestUnreachableRepositoryRecoversC05 is field case C05 for the poller:
// while the repository cannot be reached its health says so, and when it
// comes back the running poller records changes again by itself.
func TestUnreachableRepositoryRecoversC05(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *PollerConfig) { c.Repo.PollInterval = config.Duration(50 * time.Millisecond) })
	if err := h.poller.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "a first good poll", func() bool { return !h.poller.Health().LastSuccess.IsZero() })

	hidden := h.remote.bare + ".away"
	if err := os.Rename(h.remote.bare, hidden); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the poller to fail", func() bool { return h.poller.Health().Failing() })
	hl := h.poller.Health()
	if !strings.Contains(hl.LastError, "fetch") || hl.LastSuccess.IsZero() || hl.NextPoll.IsZero() {
		t.Fatalf("health while failing = %+v", hl)
	}

	if err := os.Rename(hidden, h.remote.bare); err != nil {
		t.Fatal(err)
	}
	rev := h.remote.commit("after the outage", nil)
	h.remote.push()
	waitFor(t, 10*time.Second, "the change after recovery", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return len(h.changes) > 0
	})
	if got := refsOf(h.taken()); !reflect.DeepEqual(got, on("main", rev)) {
		t.Fatalf("changes after recovery = %v", got)
	}
	if hl := h.poller.Health(); hl.Failing() || hl.LastError == "" {
		t.Fatalf("health after recovery = %+v, want the old error kept and not failing", hl)
	}
}

func TestNewPollerChecksConfig(t *testing.T) {
	t.Parallel()
	s := openStore(t, "")
	good := PollerConfig{Repo: config.Repo{Name: "app", URL: "file:///nowhere"}, Store: s, Dir: t.TempDir()}
	tests := []struct {
		name string
		edit func(*PollerConfig)
		want string
	}{
		{"no name", func(c *PollerConfig) { c.Repo.Name = "" }, "no name"},
		{"no url", func(c *PollerConfig) { c.Repo.URL = "" }, "no url"},
		{"no store", func(c *PollerConfig) { c.Store = nil }, "no store"},
		{"no dir", func(c *PollerConfig) { c.Dir = "" }, "no directory"},
		{"bad pattern", func(c *PollerConfig) { c.Repo.Branches = []string{"[x"} }, `branch pattern "[x"`},
		{"negative cap", func(c *PollerConfig) { c.MaxChangesPerPoll = -1 }, "negative"},
	}
	for _, tt := range tests {
		cfg := good
		tt.edit(&cfg)
		_, err := NewPoller(cfg)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: NewPoller error = %v, want one saying %q", tt.name, err, tt.want)
		}
	}
	p, err := NewPoller(good)
	if err != nil {
		t.Fatal(err)
	}
	if p.cfg.MaxChangesPerPoll != DefaultMaxChangesPerPoll || p.cfg.Repo.PollInterval.D() != DefaultPollInterval {
		t.Fatalf("defaults not filled: %+v", p.cfg)
	}
}

func TestStartAndStop(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.poller.Stop() // before Start: nothing to stop
	if err := h.poller.Start(context.Background()); !errors.Is(err, ErrStopped) {
		t.Fatalf("Start after Stop = %v, want ErrStopped", err)
	}

	p := h.newPoller(h.store, nil)
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background()); !errors.Is(err, ErrStarted) {
		t.Fatalf("second Start = %v, want ErrStarted", err)
	}
	waitFor(t, 10*time.Second, "the first poll", func() bool { return !p.Health().NextPoll.IsZero() })
	p.Stop()
	p.Stop()

	// A cancelled context ends the loop as Stop does.
	ctx, cancel := context.WithCancel(context.Background())
	q := h.newPoller(h.store, nil)
	if err := q.Start(ctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	q.Stop()
}

func TestGitErrorsNameTheCommandAndItsOutput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	g := newGitRunner(filepath.Join(dir, "missing.git"), dir, time.Minute, nil)
	_, err := g.run(context.Background(), nil, "-c", "gc.auto=0", "rev-parse", "HEAD")
	var gerr *gitError
	if !errors.As(err, &gerr) || gerr.cmd != "rev-parse" || !strings.Contains(err.Error(), "not a git repository") {
		t.Fatalf("error = %v, want a rev-parse error quoting git", err)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Fatalf("error spans lines: %q", err)
	}
}

func TestOnPollReportsEachPollButNotCancelledOnes(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var reports []error
	h := newHarness(t, func(c *PollerConfig) {
		c.OnPoll = func(err error) {
			mu.Lock()
			defer mu.Unlock()
			reports = append(reports, err)
		}
	})
	h.poll()
	if err := os.Rename(h.remote.bare, h.remote.bare+".away"); err != nil {
		t.Fatal(err)
	}
	if err := h.poller.PollNow(context.Background()); err == nil {
		t.Fatal("poll of a missing repository succeeded")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	h.poller.PollNow(ctx)
	mu.Lock()
	defer mu.Unlock()
	if len(reports) != 2 || reports[0] != nil || reports[1] == nil {
		t.Fatalf("reports %v, want a success then a failure", reports)
	}
}
