package web

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/regent-ci/regent/internal/config"
	"github.com/regent-ci/regent/internal/store"
)

// testEnv is a web server on a fresh SQLite store, reached over real
// HTTP on loopback.
type testEnv struct {
	t     *testing.T
	ctx   context.Context
	store *store.Store
	srv   *httptest.Server
	web   *Server
	wakes atomic.Int32
	// sess is worker w1's session, opened at the first build; opening
	// another would supersede it and end its builds.
	sess *store.Session
}

// newEnv opens a store, applies baseState and serves it. Options adjust
// the server's configuration.
func newEnv(t *testing.T, opts ...func(*Config)) *testEnv {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "regent.db"))
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	e := &testEnv{t: t, ctx: ctx, store: st}
	cfg := Config{
		Store: st, Master: "m1", Version: "test",
		Wake:      func() { e.wakes.Add(1) },
		LogPoll:   20 * time.Millisecond,
		EventPoll: 20 * time.Millisecond,
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	for _, o := range opts {
		o(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("new server: %v", err)
	}
	e.web = s
	e.srv = httptest.NewServer(s.Handler())
	t.Cleanup(e.srv.Close)
	t.Cleanup(s.Close) // runs first: ends open streams so the server can close
	e.apply(baseState())
	return e
}

// baseState has two builders, two workers and a force scheduler.
func baseState() *config.State {
	step := config.Step{Kind: config.StepShell, Name: "test", Command: "make test"}
	return &config.State{
		Workers: []config.Worker{
			{Name: "w1", Password: "pw1", MaxBuilds: 20},
			{Name: "w2", Password: "pw2", MaxBuilds: 20, Tags: []string{"linux"}},
		},
		Builders: []config.Builder{
			{Name: "app", Workers: []string{"w1"}, Steps: []config.Step{step},
				Description: "the application"},
			{Name: "docs", Workers: []string{"w1", "w2"}, Steps: []config.Step{step}},
		},
		Schedulers: []config.Scheduler{
			{Name: "force", Kind: config.SchedulerForce, Builders: []string{"app", "docs"}},
		},
	}
}

// apply stores st as a new generation.
func (e *testEnv) apply(st *config.State) store.Generation {
	e.t.Helper()
	res, err := e.store.Apply(e.ctx, st, "test", "tester")
	if err != nil {
		e.t.Fatalf("apply: %v", err)
	}
	return res.Generation
}

// fakeBuild is a build claimed by an in-process stand-in for a worker,
// written to the store the way the worker API would.
type fakeBuild struct {
	e     *testEnv
	ID    int64
	token string
	sizes map[int]int64
}

// startBuild forces a build of builder and claims it as worker w1.
func (e *testEnv) startBuild(builder string, props map[string]string) *fakeBuild {
	e.t.Helper()
	if _, _, err := e.store.CreateBuildset(e.ctx, store.BuildsetInput{
		Reason: "test", Scheduler: "force", Properties: props, Builders: []string{builder},
	}); err != nil {
		e.t.Fatalf("create buildset: %v", err)
	}
	if e.sess == nil {
		sess, _, err := e.store.OpenSession(e.ctx, "w1", "pw1", "m1", "127.0.0.1")
		if err != nil {
			e.t.Fatalf("open session: %v", err)
		}
		e.sess = &sess
	}
	claimed, err := e.store.Claim(e.ctx, *e.sess, "m1", 1)
	if err != nil || len(claimed) != 1 {
		e.t.Fatalf("claim: %d builds, %v", len(claimed), err)
	}
	c := claimed[0]
	return &fakeBuild{e: e, ID: c.Build.ID, token: c.AttemptToken, sizes: map[int]int64{}}
}

func (b *fakeBuild) startStep(n int, name string) {
	b.e.t.Helper()
	if err := b.e.store.StartStep(b.e.ctx, b.ID, b.token, n, name); err != nil {
		b.e.t.Fatalf("start step %d: %v", n, err)
	}
}

func (b *fakeBuild) log(n int, data string) {
	b.e.t.Helper()
	size, err := b.e.store.AppendLog(b.e.ctx, b.ID, b.token, n, b.sizes[n], []byte(data))
	if err != nil {
		b.e.t.Fatalf("append log of step %d: %v", n, err)
	}
	b.sizes[n] = size
}

func (b *fakeBuild) finishStep(n int, result string) {
	b.e.t.Helper()
	if err := b.e.store.FinishStep(b.e.ctx, b.ID, b.token, n, result, "", nil, b.sizes[n]); err != nil {
		b.e.t.Fatalf("finish step %d: %v", n, err)
	}
}

func (b *fakeBuild) finish(result string) {
	b.e.t.Helper()
	if err := b.e.store.FinishBuild(b.e.ctx, b.ID, b.token, result, ""); err != nil {
		b.e.t.Fatalf("finish build: %v", err)
	}
}

// finishedBuild runs a whole one-step build of builder with result.
func (e *testEnv) finishedBuild(builder, result, output string) *fakeBuild {
	e.t.Helper()
	b := e.startBuild(builder, nil)
	b.startStep(1, "test")
	b.log(1, output)
	b.finishStep(1, result)
	b.finish(result)
	return b
}

// response is an answer read whole.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

// do sends a request to the server and reads the whole answer.
func (e *testEnv) do(method, path, body string, header map[string]string) response {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(e.ctx, method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
	resp, err := client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("read %s %s: %v", method, path, err)
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: data}
}

// getJSON fetches path, checks the status and decodes the JSON answer.
func (e *testEnv) getJSON(path string, wantStatus int) map[string]any {
	e.t.Helper()
	return e.expectJSON(e.do("GET", path, "", nil), "GET "+path, wantStatus)
}

// expectJSON checks an answer's status and content type and decodes it.
func (e *testEnv) expectJSON(r response, what string, wantStatus int) map[string]any {
	e.t.Helper()
	if r.Status != wantStatus {
		e.t.Fatalf("%s: status %d, want %d; body %s", what, r.Status, wantStatus, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		e.t.Fatalf("%s: Content-Type %q, want application/json", what, ct)
	}
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(r.Body))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		e.t.Fatalf("%s: decode %s: %v", what, r.Body, err)
	}
	return m
}

// items returns the items of a list answer, checking its shape.
func items(t *testing.T, m map[string]any) []map[string]any {
	t.Helper()
	raw, ok := m["items"].([]any)
	if !ok {
		t.Fatalf("answer has no items list: %v", m)
	}
	if _, ok := m["next"]; !ok {
		t.Fatalf("list answer has no next: %v", m)
	}
	out := make([]map[string]any, len(raw))
	for i, it := range raw {
		out[i] = it.(map[string]any)
	}
	return out
}

// num reads a JSON number field as int64.
func num(t *testing.T, m map[string]any, key string) int64 {
	t.Helper()
	n, ok := m[key].(json.Number)
	if !ok {
		t.Fatalf("field %q = %#v, want a number in %v", key, m[key], m)
	}
	v, err := n.Int64()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// eventually polls cond every few milliseconds until it holds or the
// deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
