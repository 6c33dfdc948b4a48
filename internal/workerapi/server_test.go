package workerapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/regent-ci/regent/internal/config"
	"github.com/regent-ci/regent/internal/store"
	"github.com/regent-ci/regent/internal/testutil/pgtest"
	"github.com/regent-ci/regent/internal/workerapi"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// fixture is a master's worker API on a SQLite store with one worker, w1,
// and two builders: slow, and locked, whose step names the lock "db".
type fixture struct {
	t     *testing.T
	store *store.Store
	srv   *httptest.Server
	token string
}

func newFixture(t *testing.T, cfg workerapi.ServerConfig) *fixture {
	t.Helper()
	ctx := context.Background()
	s, err := store.Open(ctx, filepath.Join(t.TempDir(), "regent.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	st := &config.State{
		Workers: []config.Worker{{Name: "w1", Password: "pw", MaxBuilds: 2}},
		Locks:   []config.Lock{{Name: "db", MaxHolders: 1}},
		Builders: []config.Builder{
			{Name: "locked", Workers: []string{"w1"}, Steps: []config.Step{
				{Kind: config.StepShell, Name: "migrate", Command: "true", Locks: []string{"db"}}}},
			{Name: "slow", Workers: []string{"w1"}, Steps: []config.Step{
				{Kind: config.StepShell, Name: "sleep", Command: "sleep 100"}}},
		},
	}
	if _, err := s.Apply(ctx, st, "test", "tester"); err != nil {
		t.Fatal(err)
	}
	cfg.Store, cfg.Master = s, "m1"
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	api, err := workerapi.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, store: s, srv: httptest.NewServer(api.Handler())}
	t.Cleanup(f.srv.Close)

	req, _ := http.NewRequest("POST", f.srv.URL+"/api/worker/v1/sessions", nil)
	req.SetBasicAuth("w1", "pw")
	var sess workerapi.SessionResponse
	if code := f.do(req, &sess); code != http.StatusOK {
		t.Fatalf("login: status %d", code)
	}
	f.token = sess.Token
	return f
}

// do sends req and decodes the JSON answer into v.
func (f *fixture) do(req *http.Request, v any) int {
	f.t.Helper()
	if f.token != "" {
		req.Header.Set("Authorization", "Bearer "+f.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			f.t.Fatalf("%s %s: decode %q: %v", req.Method, req.URL.Path, body, err)
		}
	}
	return resp.StatusCode
}

func (f *fixture) post(path string, body any, v any) int {
	f.t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", f.srv.URL+"/api/worker/v1"+path, bytes.NewReader(b))
	return f.do(req, v)
}

// poll polls and returns the answer and how long it took.
func (f *fixture) poll(running []int64, capacity int) (workerapi.PollResponse, time.Duration) {
	f.t.Helper()
	var resp workerapi.PollResponse
	start := time.Now()
	if code := f.post("/poll", workerapi.PollRequest{Running: running, Capacity: capacity, Wait: true},
		&resp); code != http.StatusOK {
		f.t.Fatalf("poll: status %d", code)
	}
	return resp, time.Since(start)
}

func (f *fixture) force(builder string) {
	f.t.Helper()
	_, _, err := f.store.CreateBuildset(context.Background(), store.BuildsetInput{
		Reason: "test", Scheduler: "force", Builders: []string{builder}})
	if err != nil {
		f.t.Fatal(err)
	}
}

// A cancel order ends a held poll once; polls after it, while the worker
// is still stopping the build, are held as if there were no news, and
// still carry the order.
func TestCancelOrdersDoNotFloodTheWorker(t *testing.T) {
	t.Parallel()
	f := newFixture(t, workerapi.ServerConfig{PollTimeout: time.Second, Recheck: 50 * time.Millisecond})
	f.force("slow")
	resp, _ := f.poll(nil, 1)
	if len(resp.Builds) != 1 {
		t.Fatalf("poll handed out %d builds, want 1", len(resp.Builds))
	}
	id := resp.Builds[0].BuildID

	done := make(chan time.Duration, 1)
	go func() {
		start := time.Now()
		var r workerapi.PollResponse
		b, _ := json.Marshal(workerapi.PollRequest{Running: []int64{id}, Capacity: 1, Wait: true})
		req, _ := http.NewRequest("POST", f.srv.URL+"/api/worker/v1/poll", bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer "+f.token)
		if hr, err := http.DefaultClient.Do(req); err == nil {
			json.NewDecoder(hr.Body).Decode(&r)
			hr.Body.Close()
		}
		if len(r.Cancel) != 1 || r.Cancel[0] != id {
			t.Errorf("held poll answered %+v, want a cancel of build %d", r, id)
		}
		done <- time.Since(start)
	}()
	time.Sleep(200 * time.Millisecond)
	if err := f.store.CancelBuild(context.Background(), id, "test"); err != nil {
		t.Fatal(err)
	}
	// Without a wake-up the held poll sees the order at its next recheck.
	if took := <-done; took > 700*time.Millisecond {
		t.Fatalf("the held poll took %s to bring the cancel order", took)
	}

	for range 2 {
		resp, took := f.poll([]int64{id}, 1)
		if took < 900*time.Millisecond {
			t.Fatalf("a poll with only an order already sent was answered after %s; want it held", took)
		}
		if len(resp.Cancel) != 1 || resp.Cancel[0] != id {
			t.Fatalf("held poll answer %+v does not repeat the order", resp)
		}
	}
}

// A step's locks are granted through the API, refused while another step
// holds them, and given back by release; a log append past the master's
// limit is refused, and builds carry the limit.
func TestStepLocksAndLogLimitThroughTheAPI(t *testing.T) {
	t.Parallel()
	f := newFixture(t, workerapi.ServerConfig{PollTimeout: time.Second, MaxStepLog: 100})
	f.force("locked")
	f.force("locked")
	resp, _ := f.poll(nil, 2)
	if len(resp.Builds) != 2 || resp.Builds[0].MaxStepLog != 100 {
		t.Fatalf("poll answered %+v, want two builds carrying the log limit", resp)
	}
	a, b := resp.Builds[0], resp.Builds[1]
	var g workerapi.LockGrant
	path := func(a workerapi.Assignment, what string) string {
		return fmt.Sprintf("/builds/%d/steps/1/%s", a.BuildID, what)
	}
	if code := f.post(path(a, "locks/acquire"), workerapi.AttemptRequest{AttemptToken: a.AttemptToken},
		&g); code != http.StatusOK || !g.Acquired {
		t.Fatalf("first acquire: %d %+v", code, g)
	}
	g = workerapi.LockGrant{}
	if code := f.post(path(b, "locks/acquire"), workerapi.AttemptRequest{AttemptToken: b.AttemptToken},
		&g); code != http.StatusOK || g.Acquired || g.Waiting != "db" {
		t.Fatalf("second acquire: %d %+v, want waiting for db", code, g)
	}
	if code := f.post(path(b, "locks/acquire"), workerapi.AttemptRequest{AttemptToken: "stale"},
		nil); code != http.StatusConflict {
		t.Fatalf("acquire with a stale attempt: status %d, want 409", code)
	}
	if code := f.post(path(a, "locks/release"), workerapi.AttemptRequest{AttemptToken: a.AttemptToken},
		nil); code != http.StatusOK {
		t.Fatalf("release: status %d", code)
	}
	if code := f.post(path(b, "locks/acquire"), workerapi.AttemptRequest{AttemptToken: b.AttemptToken},
		&g); code != http.StatusOK || !g.Acquired {
		t.Fatalf("acquire after the release: %d %+v", code, g)
	}

	if code := f.post(path(a, "start"), workerapi.StepStart{AttemptToken: a.AttemptToken, Name: "x"},
		nil); code != http.StatusOK {
		t.Fatalf("step start: %d", code)
	}
	appendLog := func(offset int, n int) int {
		req, _ := http.NewRequest("POST", f.srv.URL+"/api/worker/v1"+path(a, "log")+
			fmt.Sprintf("?offset=%d", offset), bytes.NewReader(bytes.Repeat([]byte("x"), n)))
		req.Header.Set(workerapi.HeaderAttempt, a.AttemptToken)
		return f.do(req, nil)
	}
	if code := appendLog(0, 100+200); code != http.StatusOK {
		t.Fatalf("append within the limit and the marker's room: status %d", code)
	}
	if code := appendLog(300, 2000); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("append past the limit: status %d, want 413", code)
	}
}

// A build whose hand-out answer never reached the worker is offered again,
// the same build with the same attempt token, on the worker's next poll
// that lacks it, instead of waiting to be declared lost and retried; a
// build the worker reports, or has started a step of, is not.
func TestLostHandOutIsOfferedAgain(t *testing.T) {
	t.Parallel()
	f := newFixture(t, workerapi.ServerConfig{PollTimeout: 300 * time.Millisecond, Recheck: 50 * time.Millisecond})
	f.force("slow")
	first, _ := f.poll(nil, 1)
	if len(first.Builds) != 1 {
		t.Fatalf("poll handed out %d builds, want 1", len(first.Builds))
	}
	a := first.Builds[0]

	// The answer is lost: the worker polls again without the build, once
	// the margin for a report made before the hand-out has passed.
	time.Sleep(1100 * time.Millisecond)
	f.force("slow")
	again, _ := f.poll(nil, 2)
	if len(again.Builds) != 2 {
		t.Fatalf("the next poll handed out %+v; want the lost build again and a new one", again.Builds)
	}
	if got := again.Builds[0]; got.BuildID != a.BuildID || got.AttemptToken != a.AttemptToken ||
		got.Number != a.Number || len(got.Steps) != len(a.Steps) {
		t.Fatalf("offered again: build %d #%d token %q; want build %d #%d with its token", got.BuildID,
			got.Number, got.AttemptToken, a.BuildID, a.Number)
	}
	b := again.Builds[1]
	if b.BuildID == a.BuildID {
		t.Fatal("the second force did not make a new build")
	}

	// Reported running, or started, a build is not offered again.
	if err := f.store.StartStep(context.Background(), b.BuildID, b.AttemptToken, 1, "sleep"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	if resp, _ := f.poll([]int64{a.BuildID}, 1); len(resp.Builds) != 0 {
		t.Fatalf("a poll reporting build %d, whose sibling %d has started a step, handed out %+v",
			a.BuildID, b.BuildID, resp.Builds)
	}
}
