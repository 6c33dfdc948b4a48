package worker

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/regent-ci/regent/internal/workerapi"
)

// fakeCluster stands in for the database behind a set of masters: every
// fakeMaster of a cluster serves the same sessions and builds, as the real
// masters of one cluster do. It implements the worker protocol of package
// workerapi and records everything the worker reports.
type fakeCluster struct {
	t *testing.T

	mu          sync.Mutex
	changed     chan struct{} // closed and replaced on every change
	password    string
	pollTimeout int // seconds
	maxBuilds   int // max_builds reported at login; 0: none
	sessions    map[string]*fakeSession
	nextSession int64
	logins      int
	refused     int
	queue       []workerapi.Assignment
	cancel      map[int64]bool // builds to cancel, sent while reported running
	stopReason  string         // non-empty: answer polls with Stop
	builds      map[int64]*fakeBuild
	lastPoll    workerapi.PollRequest
	polls       int
	// lockHolder maps a lock to the build whose step holds it; every lock
	// of the fake cluster is exclusive.
	lockHolder map[string]int64
	// lockWaits counts acquire calls refused for want of room.
	lockWaits int

	// fault, when set, decides per request whether the master fails it
	// and how; nil is a healthy master.
	faultMu sync.Mutex
	fault   func(r *http.Request) fault
}

type fakeSession struct {
	id     int64
	token  string
	active bool
}

// fakeBuild is what a build's reports amount to on the master.
type fakeBuild struct {
	a          workerapi.Assignment
	steps      map[int]*fakeStep
	finished   bool
	result     string
	reason     string
	finishedAt time.Time
}

type fakeStep struct {
	name     string
	log      []byte
	finished bool
	result   string
	reason   string
	logSize  int64
	props    map[string]string
}

// fault is how a fake master fails one request.
type fault int

const (
	faultNone       fault = iota
	faultDropBefore       // close the connection before handling
	fault500Before        // answer 500 before handling
	faultDropAfter        // handle, then close the connection (the answer is lost)
	fault500After         // handle, then answer 500 (the answer is lost)
)

func newFakeCluster(t *testing.T) *fakeCluster {
	return &fakeCluster{
		t:           t,
		changed:     make(chan struct{}),
		password:    "secret",
		pollTimeout: 2,
		sessions:    make(map[string]*fakeSession),
		cancel:      make(map[int64]bool),
		builds:      make(map[int64]*fakeBuild),
		lockHolder:  make(map[string]int64),
	}
}

// notify wakes waiting polls and test waits; c.mu is held.
func (c *fakeCluster) notify() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// update changes the cluster's state under its lock.
func (c *fakeCluster) update(f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f()
	c.notify()
}

// assign queues builds for the next poll with capacity.
func (c *fakeCluster) assign(as ...workerapi.Assignment) {
	c.update(func() {
		for _, a := range as {
			c.builds[a.BuildID] = &fakeBuild{a: a, steps: make(map[int]*fakeStep)}
			c.queue = append(c.queue, a)
		}
	})
}

// setFault installs a fault injector for every master of the cluster.
func (c *fakeCluster) setFault(f func(r *http.Request) fault) {
	c.faultMu.Lock()
	defer c.faultMu.Unlock()
	c.fault = f
}

// randomFaults fails about one request in rate with a random kind of
// fault, deterministically for a seed. A poll only fails before it is
// handled: a poll answer lost with a build in it is the master's problem
// (it reconciles with the next poll's running list), not the worker's.
func randomFaults(seed uint64, rate int) func(*http.Request) fault {
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(seed, seed))
	return func(r *http.Request) fault {
		mu.Lock()
		defer mu.Unlock()
		if rng.IntN(rate) != 0 {
			return faultNone
		}
		if strings.HasSuffix(r.URL.Path, "/poll") {
			return fault(1 + rng.IntN(2))
		}
		return fault(1 + rng.IntN(4))
	}
}

// waitFor waits until cond holds on the cluster's state, failing the test
// after timeout.
func (c *fakeCluster) waitFor(timeout time.Duration, what string, cond func() bool) {
	c.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		ok := cond()
		changed := c.changed
		c.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			c.t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
	}
}

// waitFinished waits for a build's result and returns a copy of it.
func (c *fakeCluster) waitFinished(id int64, timeout time.Duration) fakeBuild {
	c.t.Helper()
	c.waitFor(timeout, fmt.Sprintf("build %d to finish", id), func() bool {
		return c.builds[id].finished
	})
	return c.build(id)
}

// build returns a deep copy of a build's record.
func (c *fakeCluster) build(id int64) fakeBuild {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := *c.builds[id]
	b.steps = make(map[int]*fakeStep)
	for n, s := range c.builds[id].steps {
		cp := *s
		cp.log = append([]byte(nil), s.log...)
		b.steps[n] = &cp
	}
	return b
}

// fakeMaster is one master of a fakeCluster, on its own loopback port.
type fakeMaster struct {
	c    *fakeCluster
	name string
	srv  *httptest.Server
	down atomic.Bool // drop every connection
	hits atomic.Int64
}

// addMaster starts another master of the cluster.
func (c *fakeCluster) addMaster(name string) *fakeMaster {
	m := &fakeMaster{c: c, name: name}
	mux := http.NewServeMux()
	const p = "/api/worker/v1"
	mux.HandleFunc("POST "+p+"/sessions", m.login)
	mux.HandleFunc("POST "+p+"/poll", m.authed(m.poll))
	mux.HandleFunc("POST "+p+"/builds/{id}/steps/{n}/start", m.authed(m.stepStart))
	mux.HandleFunc("POST "+p+"/builds/{id}/steps/{n}/log", m.authed(m.stepLog))
	mux.HandleFunc("POST "+p+"/builds/{id}/steps/{n}/finish", m.authed(m.stepFinish))
	mux.HandleFunc("POST "+p+"/builds/{id}/finish", m.authed(m.buildFinish))
	mux.HandleFunc("POST "+p+"/builds/{id}/steps/{n}/locks/acquire", m.authed(m.acquireLocks))
	mux.HandleFunc("POST "+p+"/builds/{id}/steps/{n}/locks/release", m.authed(m.releaseLocks))
	m.srv = httptest.NewServer(m.faulty(mux))
	c.t.Cleanup(func() {
		m.setDown(true) // releases held polls
		m.srv.Close()
	})
	return m
}

// URL is the master's base URL.
func (m *fakeMaster) URL() string { return m.srv.URL }

// setDown makes the master drop every connection, or serve again.
func (m *fakeMaster) setDown(down bool) {
	m.down.Store(down)
	m.c.update(func() {})
}

// faulty wraps the routes with the cluster's fault injection.
func (m *fakeMaster) faulty(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.hits.Add(1)
		if m.down.Load() {
			drop(w)
			return
		}
		m.c.faultMu.Lock()
		f := faultNone
		if m.c.fault != nil {
			f = m.c.fault(r)
		}
		m.c.faultMu.Unlock()
		switch f {
		case faultDropBefore:
			drop(w)
		case fault500Before:
			http.Error(w, `{"error":"injected failure"}`, http.StatusInternalServerError)
		case faultDropAfter, fault500After:
			h.ServeHTTP(discard{header: http.Header{}}, r)
			if f == faultDropAfter {
				drop(w)
			} else {
				http.Error(w, `{"error":"injected failure"}`, http.StatusInternalServerError)
			}
		default:
			h.ServeHTTP(w, r)
		}
	})
}

// drop closes the connection without an answer.
func drop(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err == nil {
		conn.Close()
	}
}

// discard is a ResponseWriter whose answer is lost.
type discard struct{ header http.Header }

func (d discard) Header() http.Header         { return d.header }
func (d discard) Write(b []byte) (int, error) { return len(b), nil }
func (d discard) WriteHeader(int)             {}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, workerapi.Error{Error: msg})
}

func (m *fakeMaster) login(w http.ResponseWriter, r *http.Request) {
	name, password, ok := r.BasicAuth()
	c := m.c
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.notify()
	if !ok || name == "" || password != c.password {
		c.refused++
		writeError(w, http.StatusUnauthorized, "unknown worker or wrong password")
		return
	}
	for _, s := range c.sessions {
		s.active = false // a new session supersedes the old ones
	}
	c.nextSession++
	c.logins++
	s := &fakeSession{id: c.nextSession, token: fmt.Sprintf("tok-%d", c.nextSession), active: true}
	c.sessions[s.token] = s
	writeJSON(w, http.StatusOK, workerapi.SessionResponse{
		SessionID: s.id, Token: s.token, PollTimeoutSeconds: c.pollTimeout, Master: m.name,
		MaxBuilds: c.maxBuilds})
}

// endSessions makes every session refused with 401, as after a lost session.
func (c *fakeCluster) endSessions() {
	c.update(func() {
		for _, s := range c.sessions {
			s.active = false
		}
	})
}

func (m *fakeMaster) authed(h func(http.ResponseWriter, *http.Request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		token, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		m.c.mu.Lock()
		s := m.c.sessions[token]
		m.c.mu.Unlock()
		if s == nil || !s.active {
			writeError(w, http.StatusUnauthorized, "session ended; log in again")
			return
		}
		h(w, r)
	}
}

func (m *fakeMaster) poll(w http.ResponseWriter, r *http.Request) {
	var req workerapi.PollRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	c := m.c
	c.update(func() {
		c.lastPoll = req
		c.polls++
	})
	deadline := time.NewTimer(time.Duration(c.pollTimeout) * time.Second)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		resp := workerapi.PollResponse{}
		if c.stopReason != "" {
			resp.Stop, resp.Reason = true, c.stopReason
		}
		for _, id := range req.Running {
			if c.cancel[id] {
				resp.Cancel = append(resp.Cancel, id)
			}
		}
		if n := min(req.Capacity, len(c.queue)); n > 0 && !resp.Stop {
			resp.Builds, c.queue = c.queue[:n], c.queue[n:]
		}
		changed := c.changed
		c.mu.Unlock()

		if resp.Stop || len(resp.Cancel) > 0 || len(resp.Builds) > 0 || !req.Wait {
			writeJSON(w, http.StatusOK, resp)
			return
		}
		select {
		case <-changed:
			if m.down.Load() {
				drop(w)
				return
			}
		case <-deadline.C:
			writeJSON(w, http.StatusOK, workerapi.PollResponse{})
			return
		case <-r.Context().Done():
			return
		}
	}
}

// buildFor checks a build write's attempt token; it answers and returns
// nil when the write is refused. c.mu is held.
func (m *fakeMaster) buildFor(w http.ResponseWriter, r *http.Request, token string) *fakeBuild {
	id, _ := strconv.ParseInt(r.PathValue("id"), 10, 64)
	b := m.c.builds[id]
	switch {
	case b == nil:
		writeError(w, http.StatusNotFound, "no such build")
	case token != b.a.AttemptToken:
		writeError(w, http.StatusConflict, "stale attempt")
	case b.finished:
		writeError(w, http.StatusConflict, "build already finished")
	default:
		return b
	}
	return nil
}

func stepNumber(r *http.Request) int {
	n, _ := strconv.Atoi(r.PathValue("n"))
	return n
}

// decoded reads a JSON request body; a malformed one leaves the zero value,
// which the attempt check then refuses.
func decoded[T any](r *http.Request) T {
	var v T
	json.NewDecoder(r.Body).Decode(&v)
	return v
}

// write runs fn on the build a write names, under the cluster's lock and
// once its attempt token is checked, and wakes the waiting polls after.
func (m *fakeMaster) write(w http.ResponseWriter, r *http.Request, token string,
	fn func(c *fakeCluster, b *fakeBuild)) {
	c := m.c
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.notify()
	if b := m.buildFor(w, r, token); b != nil {
		fn(c, b)
	}
}

// stepOf returns the step of b a request names, answering 404 when the
// build has no such step.
func stepOf(w http.ResponseWriter, r *http.Request, b *fakeBuild) (int, bool) {
	n := stepNumber(r)
	if n < 1 || n > len(b.a.Steps) {
		writeError(w, http.StatusNotFound, "no such step")
		return 0, false
	}
	return n, true
}

func (m *fakeMaster) stepStart(w http.ResponseWriter, r *http.Request) {
	body := decoded[workerapi.StepStart](r)
	m.write(w, r, body.AttemptToken, func(c *fakeCluster, b *fakeBuild) {
		n, ok := stepOf(w, r, b)
		if !ok {
			return
		}
		if b.steps[n] == nil {
			if n > 1 && (b.steps[n-1] == nil || !b.steps[n-1].finished) {
				c.t.Errorf("build %d: step %d started before step %d finished", b.a.BuildID, n, n-1)
			}
			b.steps[n] = &fakeStep{name: body.Name}
		}
		writeJSON(w, http.StatusOK, struct{}{})
	})
}

func (m *fakeMaster) stepLog(w http.ResponseWriter, r *http.Request) {
	data, err := io.ReadAll(r.Body)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	offset, err := strconv.ParseInt(r.URL.Query().Get("offset"), 10, 64)
	if err != nil || offset < 0 {
		writeError(w, http.StatusBadRequest, "bad offset")
		return
	}
	m.write(w, r, r.Header.Get(workerapi.HeaderAttempt), func(c *fakeCluster, b *fakeBuild) {
		s := b.steps[stepNumber(r)]
		switch {
		case s == nil:
			writeError(w, http.StatusNotFound, "step not started")
			return
		case s.finished:
			writeError(w, http.StatusConflict, "step already finished")
			return
		case offset > int64(len(s.log)):
			writeJSON(w, http.StatusConflict, workerapi.LogAck{Size: int64(len(s.log))})
			return
		}
		if end := offset + int64(len(data)); end > int64(len(s.log)) {
			s.log = append(s.log, data[int64(len(s.log))-offset:]...)
		}
		writeJSON(w, http.StatusOK, workerapi.LogAck{Size: int64(len(s.log))})
	})
}

func (m *fakeMaster) stepFinish(w http.ResponseWriter, r *http.Request) {
	body := decoded[workerapi.StepFinish](r)
	m.write(w, r, body.AttemptToken, func(c *fakeCluster, b *fakeBuild) {
		s := b.steps[stepNumber(r)]
		switch {
		case s == nil:
			writeError(w, http.StatusNotFound, "step not started")
			return
		case body.LogSize > int64(len(s.log)):
			writeError(w, http.StatusConflict, fmt.Sprintf("log incomplete: have %d of %d bytes",
				len(s.log), body.LogSize))
			return
		}
		s.finished, s.result, s.reason = true, body.Result, body.Reason
		s.logSize, s.props = body.LogSize, body.Properties
		writeJSON(w, http.StatusOK, struct{}{})
	})
}

func (m *fakeMaster) buildFinish(w http.ResponseWriter, r *http.Request) {
	body := decoded[workerapi.BuildFinish](r)
	c := m.c
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.notify()
	id, _ := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if b := c.builds[id]; b != nil && b.finished && b.a.AttemptToken == body.AttemptToken {
		writeJSON(w, http.StatusOK, struct{}{}) // a resend after a lost answer
		return
	}
	b := m.buildFor(w, r, body.AttemptToken)
	if b == nil {
		return
	}
	for n, s := range b.steps {
		if !s.finished {
			c.t.Errorf("build %d finished while step %d was not", id, n)
		}
	}
	b.finished, b.result, b.reason, b.finishedAt = true, body.Result, body.Reason, time.Now()
	delete(c.cancel, id)
	writeJSON(w, http.StatusOK, struct{}{})
}

// acquireLocks grants a step all the locks it names, or none.
func (m *fakeMaster) acquireLocks(w http.ResponseWriter, r *http.Request) {
	body := decoded[workerapi.AttemptRequest](r)
	m.write(w, r, body.AttemptToken, func(c *fakeCluster, b *fakeBuild) {
		n, ok := stepOf(w, r, b)
		if !ok {
			return
		}
		names := b.a.Steps[n-1].Locks
		for _, l := range names {
			if h, held := c.lockHolder[l]; held && h != b.a.BuildID {
				c.lockWaits++
				writeJSON(w, http.StatusOK, workerapi.LockGrant{Waiting: l})
				return
			}
		}
		for _, l := range names {
			c.lockHolder[l] = b.a.BuildID
		}
		writeJSON(w, http.StatusOK, workerapi.LockGrant{Acquired: true})
	})
}

// releaseLocks gives back every lock the build holds.
func (m *fakeMaster) releaseLocks(w http.ResponseWriter, r *http.Request) {
	c := m.c
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.notify()
	id, _ := strconv.ParseInt(r.PathValue("id"), 10, 64)
	for l, h := range c.lockHolder {
		if h == id {
			delete(c.lockHolder, l)
		}
	}
	writeJSON(w, http.StatusOK, struct{}{})
}
