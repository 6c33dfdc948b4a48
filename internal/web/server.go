package web

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/regent-ci/regent/internal/config"
	"github.com/regent-ci/regent/internal/store"
)

// Config configures the web server.
type Config struct {
	// Store is the database every page and answer is read from.
	Store *store.Store
	// Master is this master's name, shown in the UI's footer.
	Master string
	// AdminToken, when set, is the bearer token that actions (force,
	// cancel, rebuild) require. When empty, actions are open to anyone who
	// reaches the server; the caller warns about it at start.
	AdminToken string
	// Wake is called after an action created or cancelled build requests
	// or builds, so that dispatch looks at once. Optional.
	Wake func()
	// ExtraStatus, when set, returns notices shown at the top of every UI
	// page, such as a warning that actions are open or that masters offer
	// different configuration sources. Optional.
	ExtraStatus func(context.Context) []string
	// Secrets resolves secret("name") in configurations applied through
	// the API. Optional: without it such configurations are refused.
	Secrets config.SecretProvider
	// Collectors add metrics of the master's own (its cluster membership)
	// to /metrics. Optional.
	Collectors []prometheus.Collector
	// Version is shown in the UI's footer.
	Version string
	// LogPoll is how often a followed raw log looks for new bytes;
	// default 250ms.
	LogPoll time.Duration
	// EventPoll is how often a build's event stream looks at the store;
	// default 300ms.
	EventPoll time.Duration
	Logger    *slog.Logger
}

// Server serves the REST API, the web UI, health and metrics.
type Server struct {
	cfg     Config
	log     *slog.Logger
	pages   *pages
	metrics *prometheus.Registry
	// tokenSum is the SHA-256 of the admin token, compared in constant
	// time whatever the length of the presented token.
	tokenSum [sha256.Size]byte
	// closing ends long-lived answers (followed logs, event streams) when
	// the server is closed.
	closing context.Context
	close   context.CancelFunc
}

// New validates cfg, fills its defaults and prepares the templates.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("web: Store is required")
	}
	if cfg.Wake == nil {
		cfg.Wake = func() {}
	}
	if cfg.LogPoll <= 0 {
		cfg.LogPoll = 250 * time.Millisecond
	}
	if cfg.EventPoll <= 0 {
		cfg.EventPoll = 300 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	p, err := loadPages()
	if err != nil {
		return nil, fmt.Errorf("web: %w", err)
	}
	s := &Server{cfg: cfg, log: cfg.Logger.With("component", "web"), pages: p}
	s.tokenSum = sha256.Sum256([]byte(cfg.AdminToken))
	s.metrics = newMetrics(cfg.Store, cfg.Collectors)
	s.closing, s.close = context.WithCancel(context.Background())
	return s, nil
}

// Close ends followed logs and event streams, each after it has sent what
// is stored, so that an [http.Server.Shutdown] need not wait for them;
// browsers reconnect, to another master if need be. Streams opened later
// end the same way; other requests are answered as before. It may be
// called more than once.
func (s *Server) Close() {
	s.close()
}

// streamContext returns what a long-lived answer waits on between looks
// at the store: it ends when the client goes away or the server is closed.
func (s *Server) streamContext(r *http.Request) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(r.Context())
	stop := context.AfterFunc(s.closing, cancel)
	return ctx, func() {
		stop()
		cancel()
	}
}

// Handler returns the server's routes: /api/v1/, the UI at /, /static/,
// /healthz and /metrics.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	s.apiRoutes(mux)
	s.uiRoutes(mux)
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.Handle("GET /metrics", s.metricsHandler())
	return mux
}

// apiRoute is one REST route.
type apiRoute struct {
	method, path string
	h            http.HandlerFunc
}

func (s *Server) apiRoutes(mux *http.ServeMux) {
	const p = "/api/v1"
	routes := []apiRoute{
		{"GET", p + "/builders", s.listBuilders},
		{"GET", p + "/builders/{name}", s.getBuilder},
		{"POST", p + "/builders/{name}/force", s.admin(s.forceBuild)},
		{"GET", p + "/builds", s.listBuilds},
		{"GET", p + "/builds/{id}", s.getBuild},
		{"POST", p + "/builds/{id}/cancel", s.admin(s.cancelBuild)},
		{"POST", p + "/builds/{id}/rebuild", s.admin(s.rebuildBuild)},
		{"GET", p + "/builds/{id}/steps", s.listSteps},
		{"GET", p + "/builds/{id}/steps/{number}", s.getStep},
		{"GET", p + "/builds/{id}/steps/{number}/log", s.stepLog},
		{"GET", p + "/builds/{id}/events", s.buildEvents},
		{"GET", p + "/buildsets", pagedList(s, "list buildsets", s.cfg.Store.Buildsets,
			func(b store.Buildset) int64 { return b.ID })},
		{"GET", p + "/buildsets/{id}", s.getBuildset},
		{"GET", p + "/requests", s.listRequests},
		{"GET", p + "/requests/{id}", s.getRequest},
		{"POST", p + "/requests/{id}/cancel", s.admin(s.cancelRequest)},
		{"GET", p + "/changes", pagedList(s, "list changes", s.cfg.Store.Changes,
			func(c store.Change) int64 { return c.ID })},
		{"GET", p + "/changes/{id}", s.getChange},
		{"GET", p + "/workers", s.listWorkers},
		{"GET", p + "/workers/{name}", s.getWorker},
		{"GET", p + "/config/generations", s.listGenerations},
		{"GET", p + "/config/generations/{number}", s.getGeneration},
		{"GET", p + "/config/generations/{number}/diff", s.diffGeneration},
		{"POST", p + "/config/apply", s.admin(s.applyConfig)},
		{"POST", p + "/hooks/github", s.hook("github")},
		{"POST", p + "/hooks/gitlab", s.hook("gitlab")},
		{"POST", p + "/hooks/gitea", s.hook("gitea")},
		{"POST", p + "/hooks/generic", s.hook("generic")},
		{"GET", p + "/repos", s.listRepos},
		{"GET", p + "/repos/{name}", s.getRepo},
	}
	allowed := map[string][]string{}
	var order []string
	for _, rt := range routes {
		mux.HandleFunc(rt.method+" "+rt.path, rt.h)
		if allowed[rt.path] == nil {
			order = append(order, rt.path)
		}
		allowed[rt.path] = append(allowed[rt.path], rt.method)
	}
	// A known path asked with another method answers 405 in JSON rather
	// than the mux's plain-text one.
	for _, path := range order {
		methods := allowed[path]
		if slices.Contains(methods, "GET") {
			methods = append(methods, "HEAD")
		}
		allow := strings.Join(methods, ", ")
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			writeError(w, http.StatusMethodNotAllowed,
				fmt.Sprintf("%s is not allowed on %s; use %s", r.Method, r.URL.Path, allow))
		})
	}
	mux.HandleFunc(p+"/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such API resource: "+r.URL.Path)
	})
}

// admin wraps an API action so that it requires the admin token, when
// one is configured.
func (s *Server) admin(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := sameOriginAPI(r); err != nil {
			writeError(w, http.StatusForbidden, err.Error())
			return
		}
		if s.cfg.AdminToken != "" {
			// The scheme is case-insensitive (RFC 7235), the token not.
			scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
			if !strings.EqualFold(scheme, "Bearer") || !s.tokenOK(strings.TrimLeft(token, " ")) {
				w.Header().Set("WWW-Authenticate", `Bearer realm="regent"`)
				writeError(w, http.StatusUnauthorized,
					"this action needs the admin token: send Authorization: Bearer TOKEN")
				return
			}
		}
		h(w, r)
	}
}

// sameOriginAPI refuses API actions a web page on another site could make
// a browser send. Without an admin token nothing else stops such a page
// from forcing or cancelling builds, so cross-site requests are refused
// and bodies must be JSON, which a browser cannot send cross-site without
// a preflight this server never grants.
func sameOriginAPI(r *http.Request) error {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		return errors.New("cross-site requests may not take actions")
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || u.Host != r.Host {
			return fmt.Errorf("requests from origin %q may not take actions on %s", o, r.Host)
		}
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return fmt.Errorf("action bodies must be JSON (Content-Type: application/json), not %q", ct)
		}
	}
	return nil
}

// tokenOK compares a presented token with the admin token in constant
// time. It is true for any token when no admin token is configured.
func (s *Server) tokenOK(token string) bool {
	if s.cfg.AdminToken == "" {
		return true
	}
	sum := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(sum[:], s.tokenSum[:]) == 1
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := s.cfg.Store.DB().PingContext(ctx); err != nil {
		s.log.Warn("health check failed", "err", err)
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "database unreachable")
		return
	}
	fmt.Fprintln(w, "ok")
}

// writeJSON answers v as JSON with the given status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// errorBody is how every API error is answered.
type errorBody struct {
	Error string `json:"error"`
}

// writeError answers an API error.
func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorBody{Error: msg})
}

// fail answers an error from the store: not found and conflict with
// their statuses and the store's message, anything else as an internal
// error whose details go to the log only.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, what string, err error) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, store.ErrConflict):
		writeError(w, http.StatusConflict, err.Error())
	case r.Context().Err() != nil:
		// The client went away; there is nobody to answer.
	default:
		s.log.Error(what+" failed", "path", r.URL.Path, "err", err)
		writeError(w, http.StatusInternalServerError, what+" failed; the master's log has the details")
	}
}
