package workerapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/regent-ci/regent/internal/cluster"
	"github.com/regent-ci/regent/internal/quietlog"
	"github.com/regent-ci/regent/internal/store"
)

// ServerConfig configures the master's side of the worker protocol.
type ServerConfig struct {
	Store *store.Store
	// Master is this master's name, recorded on sessions and builds.
	Master string
	// Wake is notified when build requests or cancellations appear, so
	// that waiting polls look again at once.
	Wake *cluster.Wake
	// PollTimeout is how long a poll is held open; default 25s.
	PollTimeout time.Duration
	// Recheck is how often a held poll looks at the database even without
	// a wake-up (work created by another master); default 1s.
	Recheck time.Duration
	// MaxLogChunk bounds one log append's body; default 4 MiB.
	MaxLogChunk int64
	// WorkerTTL is how long a silent worker stays alive; polls are held
	// for at most a quarter of it. Optional.
	WorkerTTL time.Duration
	// DBTimeout bounds each round of database work behind one worker
	// request; default 5s. A master cut off from its database then fails
	// the request, and the worker moves to another master, instead of
	// holding the worker until its session expires.
	DBTimeout time.Duration
	// MaxStepLog is the most bytes of output stored per step, default
	// DefaultMaxStepLog. Workers are told the limit with each build; they
	// keep that much, add one marker line and let the step run on.
	MaxStepLog int64
	// ResendCancelAfter is how long a cancel order already sent on a
	// session waits before it is sent again; default 10s.
	ResendCancelAfter time.Duration
	// KeepSessions is how many ended sessions of a worker are kept when it
	// logs in, besides those that ran builds; default 10.
	KeepSessions int
	Logger       *slog.Logger
}

// DefaultMaxStepLog is the default per-step log limit, 512 MiB: far above
// what steps usually print, low enough that a step printing without end
// cannot fill the database.
const DefaultMaxStepLog = 512 << 20

// markerRoom is how far past MaxStepLog a worker's log may go: the room
// for its truncation marker line.
const markerRoom = 1 << 10

// Server answers workers. Build requests reach workers only through it.
type Server struct {
	cfg     ServerConfig
	log     *slog.Logger
	cancels *cancelsSent
	// failures keeps a database outage, which fails every worker
	// request, from filling the log with one line per request.
	failures quietlog.Repeats
}

// NewServer validates cfg and fills its defaults.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Store == nil || cfg.Master == "" {
		return nil, errors.New("workerapi: Store and Master are required")
	}
	if cfg.Wake == nil {
		cfg.Wake = cluster.NewWake()
	}
	if cfg.PollTimeout <= 0 {
		cfg.PollTimeout = 25 * time.Second
	}
	// A worker whose master hangs waits out its poll before it moves to
	// another master; that must stay well within its time-to-live, or
	// the other masters declare it lost meanwhile.
	if q := (cfg.WorkerTTL / 4).Truncate(time.Second); cfg.WorkerTTL > 0 && cfg.PollTimeout > max(q, time.Second) {
		cfg.PollTimeout = max(q, time.Second)
	}
	if cfg.Recheck <= 0 {
		cfg.Recheck = time.Second
	}
	if cfg.MaxLogChunk <= 0 {
		cfg.MaxLogChunk = 4 << 20
	}
	if cfg.DBTimeout <= 0 {
		cfg.DBTimeout = 5 * time.Second
	}
	if cfg.MaxStepLog <= 0 {
		cfg.MaxStepLog = DefaultMaxStepLog
	}
	if cfg.ResendCancelAfter <= 0 {
		cfg.ResendCancelAfter = 10 * time.Second
	}
	if cfg.KeepSessions <= 0 {
		cfg.KeepSessions = 10
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Server{cfg: cfg, log: cfg.Logger.With("component", "workerapi"),
		cancels: newCancelsSent(cfg.ResendCancelAfter)}, nil
}

// Handler returns the routes under /api/worker/v1/.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	const p = "/api/worker/v1"
	mux.HandleFunc("POST "+p+"/sessions", s.bounded(s.login))
	mux.HandleFunc("POST "+p+"/poll", s.authedPoll(s.poll))
	mux.HandleFunc("POST "+p+"/builds/{id}/steps/{n}/start", s.authed(s.stepStart))
	mux.HandleFunc("POST "+p+"/builds/{id}/steps/{n}/log", s.authed(s.stepLog))
	mux.HandleFunc("POST "+p+"/builds/{id}/steps/{n}/finish", s.authed(s.stepFinish))
	mux.HandleFunc("POST "+p+"/builds/{id}/steps/{n}/locks/acquire", s.authed(s.acquireLocks))
	mux.HandleFunc("POST "+p+"/builds/{id}/steps/{n}/locks/release", s.authed(s.releaseLocks))
	mux.HandleFunc("POST "+p+"/builds/{id}/steps/{n}/trigger", s.authed(s.trigger))
	mux.HandleFunc("GET "+p+"/builds/{id}/steps/{n}/trigger", s.authed(s.triggerProgress))
	mux.HandleFunc("POST "+p+"/builds/{id}/finish", s.authed(s.buildFinish))
	return mux
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	name, password, ok := r.BasicAuth()
	if !ok {
		writeError(w, http.StatusUnauthorized, "worker name and password required (HTTP Basic)")
		return
	}
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	sess, token, err := s.cfg.Store.OpenSession(r.Context(), name, password, s.cfg.Master, host)
	if errors.Is(err, store.ErrBadCredentials) {
		s.log.Warn("worker login refused", "worker", name, "remote", r.RemoteAddr)
		writeError(w, http.StatusUnauthorized, "unknown worker or wrong password")
		return
	}
	if err != nil {
		s.internal(w, "open worker session", err)
		return
	}
	s.log.Info("worker connected", "worker", name, "session", sess.ID, "remote", r.RemoteAddr)
	if n, err := s.cfg.Store.PruneSessions(r.Context(), sess.WorkerID, s.cfg.KeepSessions); err != nil {
		s.log.Warn("could not prune old worker sessions", "worker", name, "err", err)
	} else if n > 0 {
		s.log.Debug("pruned old worker sessions", "worker", name, "pruned", n)
	}
	s.cfg.Wake.Notify() // superseded sessions' pollers must learn at once
	writeJSON(w, http.StatusOK, SessionResponse{SessionID: sess.ID, Token: token,
		PollTimeoutSeconds: int(s.cfg.PollTimeout / time.Second), Master: s.cfg.Master,
		MaxBuilds: sess.MaxBuilds})
}

type authedHandler func(http.ResponseWriter, *http.Request, store.Session)

// authed resolves the bearer session token. An unknown token, or one whose
// session was lost or revoked for a password change, gets 401 so the
// worker logs in again; a superseded session, or one whose worker was
// removed, is told to stop.
//
// The whole request is bounded by the database timeout, twice over for
// room; the long poll, which waits far longer, bounds its rounds instead.
func (s *Server) authed(h authedHandler) http.HandlerFunc {
	return s.bounded(s.authedPoll(h))
}

// bounded runs h with a request context that ends after twice the
// database timeout.
func (s *Server) bounded(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*s.cfg.DBTimeout)
		defer cancel()
		h(w, r.WithContext(ctx))
	}
}

// dbCtx bounds one round of database work.
func (s *Server) dbCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.cfg.DBTimeout)
}

// authedPoll is authed without a bound on the whole request.
func (s *Server) authedPoll(h authedHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			writeError(w, http.StatusUnauthorized, "session token required (Authorization: Bearer)")
			return
		}
		lookup, cancel := s.dbCtx(r.Context())
		sess, err := s.cfg.Store.SessionByToken(lookup, token)
		cancel()
		if errors.Is(err, store.ErrBadCredentials) {
			writeError(w, http.StatusUnauthorized, "unknown session; log in again")
			return
		}
		if err != nil {
			s.internal(w, "look up session", err)
			return
		}
		if sess.State != store.SessionActive {
			s.ended(w, sess)
			return
		}
		h(w, r, sess)
	}
}

func (s *Server) ended(w http.ResponseWriter, sess store.Session) {
	stop := sess.State == store.SessionSuperseded ||
		(sess.State == store.SessionRevoked && sess.WorkerRetired)
	if stop {
		writeJSON(w, http.StatusOK, PollResponse{Stop: true, Reason: sess.Reason})
		return
	}
	writeError(w, http.StatusUnauthorized, "session ended: "+sess.Reason+"; log in again")
}

// handoutGrace is how long a build handed to a worker may go unreported
// in its polls: meanwhile it is offered again, in case the answer that
// carried it was lost; after, it is ended as lost.
const handoutGrace = 15 * time.Second

func (s *Server) poll(w http.ResponseWriter, r *http.Request, sess store.Session) {
	var req PollRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "poll body: "+err.Error())
		return
	}
	// Builds handed out before this moment, less a margin for the time the
	// request took to come and for clocks of masters that differ a
	// little, should be in the worker's report.
	reported := time.Now().Add(-time.Second)
	ctx := r.Context()
	round, cancel := s.dbCtx(ctx)
	err := s.cfg.Store.ReconcileRunning(round, sess.ID, req.Running, handoutGrace)
	cancel()
	if err != nil {
		s.internal(w, "reconcile running builds", err)
		return
	}
	deadline := time.NewTimer(s.cfg.PollTimeout)
	defer deadline.Stop()
	for {
		wake := s.cfg.Wake.C()
		round, cancel := s.dbCtx(ctx)
		resp, err := s.pollOnce(round, sess, req, reported)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				s.internal(w, "answer poll", err)
			}
			return
		}
		if resp.Stop || len(resp.Builds) > 0 || resp.news || !req.Wait {
			writeJSON(w, http.StatusOK, resp.PollResponse)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			writeJSON(w, http.StatusOK, resp.PollResponse)
			return
		case <-wake:
		case <-time.After(s.cfg.Recheck):
		}
	}
}

// pollAnswer is a poll answer and whether it carries anything the worker
// has not been told on this session.
type pollAnswer struct {
	PollResponse
	news bool
}

// pollOnce records the heartbeat and looks for orders and work: builds
// handed out before that the worker's report lacks (see
// store.Unreceived), then new ones up to its capacity. Every
// answer repeats the session's pending cancel orders, but only orders not
// sent yet (or not for a while) count as news that ends a held poll.
func (s *Server) pollOnce(ctx context.Context, sess store.Session, req PollRequest,
	reported time.Time) (pollAnswer, error) {
	cur, err := s.cfg.Store.SessionByID(ctx, sess.ID)
	if err != nil {
		return pollAnswer{}, err
	}
	if cur.State != store.SessionActive {
		return pollAnswer{PollResponse: PollResponse{Stop: true, Reason: cur.Reason}}, nil
	}
	if err := s.cfg.Store.TouchSession(ctx, sess.ID, s.cfg.Master); err != nil {
		return pollAnswer{}, err
	}
	cancel, err := s.cfg.Store.CancelOrders(ctx, sess.ID)
	if err != nil {
		return pollAnswer{}, err
	}
	resp := pollAnswer{PollResponse: PollResponse{Cancel: cancel}}
	if resp.news = s.cancels.fresh(cancel); resp.news || req.Capacity <= 0 {
		return resp, nil
	}
	claimed, err := s.cfg.Store.Unreceived(ctx, sess.ID, req.Running, reported, handoutGrace)
	if err != nil {
		return pollAnswer{}, err
	}
	for _, c := range claimed {
		s.log.Info("build offered again: the worker does not report it", "build", c.Build.ID,
			"builder", c.Build.Builder, "number", c.Build.Number, "worker", sess.WorkerName)
	}
	if capacity := req.Capacity - len(claimed); capacity > 0 {
		fresh, err := s.cfg.Store.Claim(ctx, sess, s.cfg.Master, capacity)
		if err != nil {
			return pollAnswer{}, err
		}
		for _, c := range fresh {
			s.log.Info("build dispatched", "build", c.Build.ID, "builder", c.Build.Builder,
				"number", c.Build.Number, "worker", sess.WorkerName)
		}
		claimed = append(claimed, fresh...)
	}
	for _, c := range claimed {
		resp.Builds = append(resp.Builds, Assignment{BuildID: c.Build.ID, Builder: c.Build.Builder,
			Number: c.Build.Number, AttemptToken: c.AttemptToken, Properties: c.Build.Properties,
			Env: c.Env, SecretEnv: c.SecretEnv, Steps: c.Steps, CleanWorkspace: c.Clean,
			MaxStepLog: s.cfg.MaxStepLog})
	}
	return resp, nil
}

func pathIDs(r *http.Request) (int64, int, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("build id %q is not a number", r.PathValue("id"))
	}
	n := 0
	if v := r.PathValue("n"); v != "" {
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			return 0, 0, fmt.Errorf("step number %q is not a positive number", v)
		}
	}
	return id, n, nil
}

func (s *Server) stepStart(w http.ResponseWriter, r *http.Request, _ store.Session) {
	id, n, err := pathIDs(r)
	var body StepStart
	if err == nil {
		err = decode(r, &body)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	err = s.cfg.Store.StartStep(r.Context(), id, body.AttemptToken, n, body.Name)
	s.answer(w, err, struct{}{})
}

func (s *Server) stepLog(w http.ResponseWriter, r *http.Request, _ store.Session) {
	id, n, err := pathIDs(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	offset, err := strconv.ParseInt(r.URL.Query().Get("offset"), 10, 64)
	if err != nil || offset < 0 {
		writeError(w, http.StatusBadRequest, "offset must be a non-negative number")
		return
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxLogChunk))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, "log chunk: "+err.Error())
		return
	}
	if end := offset + int64(len(data)); end > s.cfg.MaxStepLog+markerRoom {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the log of step %d of "+
			"build %d would reach %d bytes, past this master's limit of %d per step",
			n, id, end, s.cfg.MaxStepLog))
		return
	}
	size, err := s.cfg.Store.AppendLog(r.Context(), id, r.Header.Get(HeaderAttempt), n, offset, data)
	if errors.Is(err, store.ErrConflict) {
		// Tell the worker where to resume.
		size, _ = s.cfg.Store.LogSize(r.Context(), id, n)
		writeJSON(w, http.StatusConflict, LogAck{Size: size})
		return
	}
	s.answer(w, err, LogAck{Size: size})
}

func (s *Server) stepFinish(w http.ResponseWriter, r *http.Request, _ store.Session) {
	id, n, err := pathIDs(r)
	var body StepFinish
	if err == nil {
		err = decode(r, &body)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	err = s.cfg.Store.FinishStep(r.Context(), id, body.AttemptToken, n, body.Result,
		body.Reason, body.Properties, body.LogSize)
	s.answer(w, err, struct{}{})
}

func (s *Server) buildFinish(w http.ResponseWriter, r *http.Request, sess store.Session) {
	id, _, err := pathIDs(r)
	var body BuildFinish
	if err == nil {
		err = decode(r, &body)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	err = s.cfg.Store.FinishBuild(r.Context(), id, body.AttemptToken, body.Result, body.Reason)
	if err == nil {
		s.log.Info("build finished", "build", id, "result", body.Result, "worker", sess.WorkerName)
		s.cfg.Wake.Notify() // the worker has room for another build
	}
	s.answer(w, err, struct{}{})
}

func decode(r *http.Request, v any) error {
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(v); err != nil {
		return fmt.Errorf("request body: %w", err)
	}
	return nil
}

// answer maps store errors onto statuses: a stale attempt or a write that
// contradicts the stored state is 409, an unknown build or step 404.
func (s *Server) answer(w http.ResponseWriter, err error, ok any) {
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, ok)
	case errors.Is(err, store.ErrStaleAttempt), errors.Is(err, store.ErrConflict):
		writeError(w, http.StatusConflict, err.Error())
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, err.Error())
	default:
		s.internal(w, "record build progress", err)
	}
}

func (s *Server) internal(w http.ResponseWriter, doing string, err error) {
	if errors.Is(err, context.Canceled) {
		// The worker gave up on the request, or this master is stopping:
		// nobody waits for the answer.
		s.log.Info("worker request abandoned", "doing", doing, "err", err)
	} else {
		s.failures.Error(s.log, "worker request failed", err, "doing", doing)
	}
	writeError(w, http.StatusInternalServerError, doing+": internal error")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, Error{Error: msg})
}
