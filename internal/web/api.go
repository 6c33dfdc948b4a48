package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/regent-ci/regent/internal/build"
	"github.com/regent-ci/regent/internal/store"
)

// Page sizes of lists.
const (
	defaultLimit = 50
	maxLimit     = 500
)

// list is the shape of every list the API answers. Next is the cursor to
// pass as ?before= for the following page, or null on the last page.
type list[T any] struct {
	Items []T    `json:"items"`
	Next  *int64 `json:"next"`
}

// pageOf cuts items, fetched with one more than limit, to one page and
// sets the cursor from the id of its last item.
func pageOf[T any](items []T, limit int, id func(T) int64) list[T] {
	out := list[T]{Items: items}
	if out.Items == nil {
		out.Items = []T{}
	}
	if len(items) > limit {
		out.Items = items[:limit]
		next := id(items[limit-1])
		out.Next = &next
	}
	return out
}

// whole answers a list that is never paged.
func whole[T any](items []T) list[T] {
	if items == nil {
		items = []T{}
	}
	return list[T]{Items: items}
}

// paging reads ?before= and ?limit=.
func paging(r *http.Request) (before int64, limit int, err error) {
	limit = defaultLimit
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxLimit {
			return 0, 0, fmt.Errorf("limit must be a whole number from 1 to %d, not %q", maxLimit, v)
		}
		limit = n
	}
	if v := r.URL.Query().Get("before"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return 0, 0, fmt.Errorf("before must be a positive id, not %q", v)
		}
		before = n
	}
	return before, limit, nil
}

// includeRetired reads ?include=retired.
func includeRetired(r *http.Request) bool {
	return r.URL.Query().Get("include") == "retired"
}

// answerer answers a request that cannot be served with a status and a
// message: in JSON for the API ([apiAnswer]), as a page for the UI
// ([Server.errorPage]).
type answerer func(w http.ResponseWriter, r *http.Request, status int, msg string)

// apiAnswer answers an API error.
func apiAnswer(w http.ResponseWriter, _ *http.Request, status int, msg string) {
	writeError(w, status, msg)
}

// readRetired reads ?include=, which may only be "retired", answering 400
// through fail when it is anything else.
func readRetired(w http.ResponseWriter, r *http.Request, fail answerer) (retired, ok bool) {
	if v := r.URL.Query().Get("include"); v != "" && v != "retired" {
		fail(w, r, http.StatusBadRequest, fmt.Sprintf("include may only be \"retired\", not %q", v))
		return false, false
	}
	return includeRetired(r), true
}

// readPathID reads a positive integer path value, answering 400 through
// fail when it is not one.
func readPathID(w http.ResponseWriter, r *http.Request, name string, fail answerer) (int64, bool) {
	v := r.PathValue(name)
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 {
		fail(w, r, http.StatusBadRequest, fmt.Sprintf("%s %q is not a positive whole number", name, v))
		return 0, false
	}
	return n, true
}

// pathID reads a positive integer path value of an API route.
func pathID(w http.ResponseWriter, r *http.Request, name string) (int64, bool) {
	return readPathID(w, r, name, apiAnswer)
}

// readList reads the paging parameters of a list and, when states are
// given, checks its state filter against them, answering 400 through fail
// when they are wrong.
func readList(w http.ResponseWriter, r *http.Request, fail answerer, states ...string) (
	before int64, limit int, ok bool) {
	before, limit, err := paging(r)
	if err == nil && len(states) > 0 {
		err = oneOf("state", r.URL.Query().Get("state"), states...)
	}
	if err != nil {
		fail(w, r, http.StatusBadRequest, err.Error())
		return 0, 0, false
	}
	return before, limit, true
}

// listQuery is readList for an API list.
func listQuery(w http.ResponseWriter, r *http.Request, states ...string) (before int64, limit int,
	ok bool) {
	return readList(w, r, apiAnswer, states...)
}

// oneOf checks an optional filter against the values it may take.
func oneOf(field, v string, allowed ...string) error {
	if v == "" {
		return nil
	}
	for _, a := range allowed {
		if v == a {
			return nil
		}
	}
	return fmt.Errorf("%s must be one of %v, not %q", field, allowed, v)
}

func (s *Server) listBuilders(w http.ResponseWriter, r *http.Request) {
	retired, ok := readRetired(w, r, apiAnswer)
	if !ok {
		return
	}
	views, err := s.builderViews(r, retired)
	if err != nil {
		s.fail(w, r, "list builders", err)
		return
	}
	writeJSON(w, http.StatusOK, whole(views))
}

// builderViews lists builders with their newest builds.
func (s *Server) builderViews(r *http.Request, retired bool) ([]builderView, error) {
	builders, err := s.cfg.Store.Builders(r.Context(), retired)
	if err != nil {
		return nil, err
	}
	latest, err := s.cfg.Store.LatestBuilds(r.Context())
	if err != nil {
		return nil, err
	}
	views := make([]builderView, 0, len(builders))
	for _, b := range builders {
		var last *store.Build
		if lb, ok := latest[b.ID]; ok {
			last = &lb
		}
		views = append(views, newBuilderView(b, last))
	}
	return views, nil
}

// builderByName finds a builder for the API: the active one, or a
// retired one only when the request includes retired entities.
func (s *Server) builderByName(r *http.Request, name string, retired bool) (store.Builder, error) {
	b, err := s.cfg.Store.BuilderByName(r.Context(), name)
	if err != nil {
		return store.Builder{}, err
	}
	if b.RetiredGeneration != nil && !retired {
		return store.Builder{}, fmt.Errorf("builder %q was retired in generation %d "+
			"(add ?include=retired to see it): %w", name, *b.RetiredGeneration, store.ErrNotFound)
	}
	return b, nil
}

func (s *Server) getBuilder(w http.ResponseWriter, r *http.Request) {
	retired, ok := readRetired(w, r, apiAnswer)
	if !ok {
		return
	}
	b, err := s.builderByName(r, r.PathValue("name"), retired)
	if err != nil {
		s.fail(w, r, "look up builder", err)
		return
	}
	latest, err := s.cfg.Store.LatestBuilds(r.Context())
	if err != nil {
		s.fail(w, r, "look up builder", err)
		return
	}
	var last *store.Build
	if lb, ok := latest[b.ID]; ok {
		last = &lb
	}
	writeJSON(w, http.StatusOK, newBuilderView(b, last))
}

var buildStates = []string{build.StatePending, build.StateRunning, build.StateFinished}

func (s *Server) listBuilds(w http.ResponseWriter, r *http.Request) {
	before, limit, ok := listQuery(w, r, buildStates...)
	if !ok {
		return
	}
	builds, err := s.cfg.Store.Builds(r.Context(), store.BuildFilter{
		Builder: r.URL.Query().Get("builder"), State: r.URL.Query().Get("state"),
		Before: before, Limit: limit + 1,
	})
	if err != nil {
		s.fail(w, r, "list builds", err)
		return
	}
	pg := pageOf(builds, limit, func(b store.Build) int64 { return b.ID })
	writeJSON(w, http.StatusOK, list[apiBuild]{Items: mapSlice(pg.Items, showBuild), Next: pg.Next})
}

func (s *Server) getBuild(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r, "id")
	if !ok {
		return
	}
	b, err := s.cfg.Store.BuildByID(r.Context(), id)
	if err != nil {
		s.fail(w, r, "look up build", err)
		return
	}
	writeJSON(w, http.StatusOK, showBuild(b))
}

func (s *Server) listSteps(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r, "id")
	if !ok {
		return
	}
	if _, err := s.cfg.Store.BuildByID(r.Context(), id); err != nil {
		s.fail(w, r, "look up build", err)
		return
	}
	steps, err := s.cfg.Store.Steps(r.Context(), id)
	if err != nil {
		s.fail(w, r, "list steps", err)
		return
	}
	writeJSON(w, http.StatusOK, whole(mapSlice(steps, showStep)))
}

// stepOf reads the build id and step number of a step route and looks
// the step up, answering the error itself when there is one.
func (s *Server) stepOf(w http.ResponseWriter, r *http.Request) (store.Step, bool) {
	id, ok := pathID(w, r, "id")
	if !ok {
		return store.Step{}, false
	}
	n, err := strconv.Atoi(r.PathValue("number"))
	if err != nil || n < 0 {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("step number %q is not a whole number",
			r.PathValue("number")))
		return store.Step{}, false
	}
	st, err := s.cfg.Store.StepByNumber(r.Context(), id, n)
	if err != nil {
		s.fail(w, r, "look up step", err)
		return store.Step{}, false
	}
	return st, true
}

func (s *Server) getStep(w http.ResponseWriter, r *http.Request) {
	if st, ok := s.stepOf(w, r); ok {
		writeJSON(w, http.StatusOK, showStep(st))
	}
}

func (s *Server) getBuildset(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r, "id")
	if !ok {
		return
	}
	bs, err := s.cfg.Store.Buildset(r.Context(), id)
	if err != nil {
		s.fail(w, r, "look up buildset", err)
		return
	}
	writeJSON(w, http.StatusOK, withRequests(bs))
}

// withRequests makes sure a buildset shows its requests as a list, even
// an empty one.
func withRequests(bs store.Buildset) any {
	type shown struct {
		store.Buildset
		Requests []store.BuildRequest `json:"requests"`
	}
	reqs := bs.Requests
	if reqs == nil {
		reqs = []store.BuildRequest{}
	}
	return shown{Buildset: bs, Requests: reqs}
}

var requestStates = []string{store.RequestPending, store.RequestClaimed, store.RequestComplete,
	store.RequestCancelled}

func (s *Server) listRequests(w http.ResponseWriter, r *http.Request) {
	before, limit, ok := listQuery(w, r, requestStates...)
	if !ok {
		return
	}
	reqs, err := s.cfg.Store.Requests(r.Context(), store.RequestFilter{
		Builder: r.URL.Query().Get("builder"), State: r.URL.Query().Get("state"),
		Before: before, Limit: limit + 1,
	})
	if err != nil {
		s.fail(w, r, "list build requests", err)
		return
	}
	writeJSON(w, http.StatusOK, pageOf(reqs, limit, func(q store.BuildRequest) int64 { return q.ID }))
}

func (s *Server) getRequest(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r, "id")
	if !ok {
		return
	}
	req, err := s.requestByID(r, id)
	if err != nil {
		s.fail(w, r, "look up build request", err)
		return
	}
	writeJSON(w, http.StatusOK, req)
}

// requestByID finds one build request through the paged list.
func (s *Server) requestByID(r *http.Request, id int64) (store.BuildRequest, error) {
	reqs, err := s.cfg.Store.Requests(r.Context(), store.RequestFilter{Before: id + 1, Limit: 1})
	if err != nil {
		return store.BuildRequest{}, err
	}
	if len(reqs) == 0 || reqs[0].ID != id {
		return store.BuildRequest{}, fmt.Errorf("build request %d: %w", id, store.ErrNotFound)
	}
	return reqs[0], nil
}

func (s *Server) getChange(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r, "id")
	if !ok {
		return
	}
	c, err := s.cfg.Store.Change(r.Context(), id)
	if err != nil {
		s.fail(w, r, "look up change", err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

func (s *Server) listWorkers(w http.ResponseWriter, r *http.Request) {
	retired, ok := readRetired(w, r, apiAnswer)
	if !ok {
		return
	}
	workers, err := s.cfg.Store.Workers(r.Context(), retired)
	if err != nil {
		s.fail(w, r, "list workers", err)
		return
	}
	writeJSON(w, http.StatusOK, whole(mapSlice(workers, showWorker)))
}

func (s *Server) getWorker(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	retired, ok := readRetired(w, r, apiAnswer)
	if !ok {
		return
	}
	workers, err := s.cfg.Store.Workers(r.Context(), retired)
	if err != nil {
		s.fail(w, r, "look up worker", err)
		return
	}
	// Active workers come before retired ones of the same name.
	var found *store.Worker
	for i := range workers {
		wk := &workers[i]
		if wk.Name == name && (found == nil || found.RetiredGeneration != nil) {
			found = wk
		}
	}
	if found == nil {
		writeError(w, http.StatusNotFound, fmt.Sprintf("worker %q: not found", name))
		return
	}
	writeJSON(w, http.StatusOK, showWorker(*found))
}

func (s *Server) listGenerations(w http.ResponseWriter, r *http.Request) {
	before, limit, ok := listQuery(w, r)
	if !ok {
		return
	}
	gens, err := s.cfg.Store.Generations(r.Context(), before, limit+1)
	if err != nil {
		s.fail(w, r, "list generations", err)
		return
	}
	writeJSON(w, http.StatusOK, pageOf(gens, limit, func(g store.Generation) int64 { return g.Number }))
}

func (s *Server) getGeneration(w http.ResponseWriter, r *http.Request) {
	n, ok := pathID(w, r, "number")
	if !ok {
		return
	}
	g, err := s.cfg.Store.GenerationByNumber(r.Context(), n)
	if errors.Is(err, store.ErrNotFound) {
		err = fmt.Errorf("generation %d: %w", n, err)
	}
	if err != nil {
		s.fail(w, r, "look up generation", err)
		return
	}
	writeJSON(w, http.StatusOK, g)
}

// generationDiffView answers GET config/generations/{n}/diff.
type generationDiffView struct {
	From int64  `json:"from"`
	To   int64  `json:"to"`
	Plan string `json:"plan"`
}

// diffGeneration answers what generation n changed over ?from= (by default
// the generation before it; 0, the default of the first, for no
// configuration), as `regent config diff` shows it.
func (s *Server) diffGeneration(w http.ResponseWriter, r *http.Request) {
	n, ok := pathID(w, r, "number")
	if !ok {
		return
	}
	from := n - 1
	if v := r.URL.Query().Get("from"); v != "" {
		f, err := strconv.ParseInt(v, 10, 64)
		if err != nil || f < 0 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("from must be a generation number, or 0 for none, not %q", v))
			return
		}
		from = f
	}
	g, err := s.cfg.Store.GenerationByNumber(r.Context(), n)
	if errors.Is(err, store.ErrNotFound) {
		err = fmt.Errorf("generation %d: %w", n, err)
	}
	if err != nil {
		s.fail(w, r, "look up generation", err)
		return
	}
	plan, err := s.generationDiff(r, from, g)
	if err != nil {
		s.fail(w, r, "compare generations", err)
		return
	}
	writeJSON(w, http.StatusOK, generationDiffView{From: from, To: n, Plan: plan})
}

// pagedList answers a list read with store.ListOptions and paged by id
// with ?before= and ?limit=.
func pagedList[T any](s *Server, what string, fetch func(context.Context, store.ListOptions) ([]T, error),
	id func(T) int64) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		before, limit, ok := listQuery(w, r)
		if !ok {
			return
		}
		items, err := fetch(r.Context(), store.ListOptions{Before: before, Limit: limit + 1})
		if err != nil {
			s.fail(w, r, what, err)
			return
		}
		writeJSON(w, http.StatusOK, pageOf(items, limit, id))
	}
}
