package schedule

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/regent-ci/regent/internal/config"
	"github.com/regent-ci/regent/internal/store"
	"github.com/regent-ci/regent/internal/testutil/pgtest"
)

// TestMain checks, after all tests, that no service left a goroutine
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

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// env is a store with an applied state, as the schedulers see it.
type env struct {
	t     *testing.T
	ctx   context.Context
	store *store.Store
	state *config.State
	revs  int
}

// newEnv opens a SQLite store and applies st, adding worker w1 and
// builders unit, lint and deploy on it when st has no builders.
func newEnv(t *testing.T, st *config.State) *env {
	t.Helper()
	return newEnvAt(t, filepath.Join(t.TempDir(), "regent.db"), st)
}

func newEnvAt(t *testing.T, dsn string, st *config.State) *env {
	t.Helper()
	s, err := store.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if len(st.Builders) == 0 {
		st.Workers = []config.Worker{{Name: "w1", Password: "pw", MaxBuilds: 50}}
		for _, name := range []string{"deploy", "lint", "unit"} {
			st.Builders = append(st.Builders, config.Builder{Name: name, Workers: []string{"w1"},
				Steps: []config.Step{{Kind: config.StepShell, Name: "run", Command: "true"}}})
		}
	}
	if len(st.Repos) == 0 {
		st.Repos = []config.Repo{{Name: "app", URL: "https://git.example.test/app.git",
			Branches: []string{"*"}}}
	}
	e := &env{t: t, ctx: context.Background(), store: s, state: st}
	if _, err := s.Apply(e.ctx, st, "test", "tester"); err != nil {
		t.Fatal(err)
	}
	return e
}

// record records changes on branch of repository app, one per file list,
// and returns them.
func (e *env) record(branch string, files ...[]string) []store.Change {
	e.t.Helper()
	var cs []store.Change
	for _, f := range files {
		e.revs++
		cs = append(cs, store.Change{Repository: "app", Branch: branch,
			Revision: fmt.Sprintf("%040d", e.revs), Author: "Ada <ada@example.test>", Files: f,
			When: time.Now()})
	}
	added, err := e.store.RecordPoll(e.ctx, "app", nil, cs)
	if err != nil {
		e.t.Fatal(err)
	}
	return added
}

// setRecordedAt pretends change id was recorded at at.
func (e *env) setRecordedAt(id int64, at time.Time) {
	e.t.Helper()
	if _, err := e.store.DB().ExecContext(e.ctx, `UPDATE changes SET created_at = $1 WHERE id = $2`,
		at.UnixMicro(), id); err != nil {
		e.t.Fatal(err)
	}
}

// setLastRun pretends timed scheduler name last ran at at, or was added
// by a generation applied then: the time from which it counts its next
// run.
func (e *env) setLastRun(name string, at time.Time) {
	e.t.Helper()
	res, err := e.store.DB().ExecContext(e.ctx, `UPDATE scheduler_state SET last_run = $1
		WHERE scheduler = $2 AND item = ''`, at.UnixMicro(), name)
	if err != nil {
		e.t.Fatal(err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		e.t.Fatalf("scheduler %q has no last run to move", name)
	}
}

// buildsets lists the buildsets of scheduler, oldest first, with their
// requests.
func (e *env) buildsets(scheduler string) []store.Buildset {
	e.t.Helper()
	all, err := e.store.Buildsets(e.ctx, store.ListOptions{Limit: 1000})
	if err != nil {
		e.t.Fatal(err)
	}
	var out []store.Buildset
	for i := len(all) - 1; i >= 0; i-- {
		if all[i].Scheduler == scheduler {
			bs, err := e.store.Buildset(e.ctx, all[i].ID)
			if err != nil {
				e.t.Fatal(err)
			}
			out = append(out, bs)
		}
	}
	return out
}

// service returns a scheduler service on the store.
func (e *env) service(runTimed bool) *Service {
	e.t.Helper()
	s, err := New(Config{Store: e.store, RunTimed: runTimed, Logger: quiet})
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

func (e *env) runOnce(s *Service) {
	e.t.Helper()
	if err := s.RunOnce(e.ctx); err != nil {
		e.t.Fatal(err)
	}
}

// fence makes the clustered service "scheduler:NAME" owned with token and
// returns its fence. Calling it again with another token replaces the
// owner, as the supervisor does, which fences the old one out.
func (e *env) fence(name string, token int64) store.Fence {
	e.t.Helper()
	service := "scheduler:" + name
	_, err := e.store.DB().ExecContext(e.ctx, `INSERT INTO services (name, kind, state, owner,
		token, created_at) VALUES ($1, 'scheduler', 'active', 1, $2, 0)
		ON CONFLICT (name) DO UPDATE SET token = excluded.token`, service, token)
	if err != nil {
		e.t.Fatal(err)
	}
	return store.Fence{Service: service, Token: token}
}

// clock is a time that tests move by hand.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock(at time.Time) *clock { return &clock{now: at} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// timed makes a timed scheduler for the scheduler named name of the
// state, under fence f, on clock c.
func (e *env) timed(name string, f store.Fence, c *clock) *Timed {
	e.t.Helper()
	sc, ok := findScheduler(e.state, name)
	if !ok {
		e.t.Fatalf("no scheduler %q", name)
	}
	repo, _ := e.state.Repo(sc.Repo)
	t, err := NewTimed(TimedConfig{Store: e.store, Scheduler: sc, Repo: repo, Fence: f, Now: c.Now,
		Logger: quiet})
	if err != nil {
		e.t.Fatal(err)
	}
	return t
}

// session opens a session for worker w1.
func (e *env) session() store.Session {
	e.t.Helper()
	return e.sessionOf("w1")
}

// sessionOf opens a session for worker, whose password is "pw".
func (e *env) sessionOf(worker string) store.Session {
	e.t.Helper()
	sess, _, err := e.store.OpenSession(e.ctx, worker, "pw", "m1", "127.0.0.1")
	if err != nil {
		e.t.Fatal(err)
	}
	return sess
}

// claimAll claims every pending request for sess and returns the builds
// by builder name.
func (e *env) claimAll(sess store.Session) map[string]store.Claimed {
	e.t.Helper()
	cl, err := e.store.Claim(e.ctx, sess, "m1", 50)
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]store.Claimed{}
	for _, c := range cl {
		out[c.Build.Builder] = c
	}
	return out
}

func (e *env) finish(c store.Claimed, result string) {
	e.t.Helper()
	if err := e.store.FinishBuild(e.ctx, c.Build.ID, c.AttemptToken, result, ""); err != nil {
		e.t.Fatal(err)
	}
}
