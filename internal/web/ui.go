package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/regent-ci/regent/internal/build"
	"github.com/regent-ci/regent/internal/config"
	"github.com/regent-ci/regent/internal/schedule"
	"github.com/regent-ci/regent/internal/store"
)

// logTail is how much of a step's log the build page shows; the rest is
// behind the raw log link.
const logTail = 256 << 10

func (s *Server) uiRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", s.homePage)
	mux.HandleFunc("GET /builders/{name}", s.builderPage)
	mux.HandleFunc("POST /builders/{name}/force", s.uiAction(s.uiForce))
	mux.HandleFunc("GET /builds", s.buildsPage)
	mux.HandleFunc("GET /builds/{id}", s.buildPage)
	mux.HandleFunc("POST /builds/{id}/cancel", s.uiAction(s.uiCancel))
	mux.HandleFunc("POST /builds/{id}/rebuild", s.uiAction(s.uiRebuild))
	mux.HandleFunc("GET /buildsets/{id}", s.buildsetPage)
	mux.HandleFunc("POST /requests/{id}/cancel", s.uiAction(s.uiCancelRequest))
	mux.HandleFunc("GET /workers", s.workersPage)
	mux.HandleFunc("GET /cluster", s.clusterPage)
	mux.HandleFunc("GET /changes", s.changesPage)
	mux.HandleFunc("GET /repos", s.reposPage)
	mux.HandleFunc("GET /generations", s.generationsPage)
	mux.HandleFunc("GET /generations/{number}", s.generationPage)
	mux.Handle("GET /static/", staticHandler())
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.errorPage(w, r, http.StatusNotFound, "There is no page at "+r.URL.Path+".")
	})
}

// errorPage answers an error as a page.
func (s *Server) errorPage(w http.ResponseWriter, r *http.Request, status int, msg string) {
	s.render(w, r, status, "error", http.StatusText(status), msg)
}

// uiFail answers an error from the store as a page.
func (s *Server) uiFail(w http.ResponseWriter, r *http.Request, what string, err error) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		s.errorPage(w, r, http.StatusNotFound, err.Error())
	case errors.Is(err, store.ErrConflict):
		s.errorPage(w, r, http.StatusConflict, err.Error())
	case r.Context().Err() != nil:
	default:
		s.log.Error(what+" failed", "path", r.URL.Path, "err", err)
		s.errorPage(w, r, http.StatusInternalServerError, what+" failed; the master's log has the details.")
	}
}

// uiID reads a positive integer path value for a page, answering 400
// with a page when it is not one.
func (s *Server) uiID(w http.ResponseWriter, r *http.Request, name string) (int64, bool) {
	return readPathID(w, r, name, s.errorPage)
}

// uiList reads ?before=, ?limit= and, when states are given, ?state= of a
// paged page, as the API does, answering 400 with a page when they are
// wrong.
func (s *Server) uiList(w http.ResponseWriter, r *http.Request, states ...string) (
	before int64, limit int, ok bool) {
	return readList(w, r, s.errorPage, states...)
}

// olderQuery is the query of the page after one whose last item is next,
// its other parameters kept.
func olderQuery(r *http.Request, next *int64) string {
	if next == nil {
		return ""
	}
	q := r.URL.Query()
	q.Del("fragment")
	q.Set("before", strconv.FormatInt(*next, 10))
	return "?" + q.Encode()
}

func (s *Server) homePage(w http.ResponseWriter, r *http.Request) {
	retired, ok := readRetired(w, r, s.errorPage)
	if !ok {
		return
	}
	views, err := s.builderViews(r, retired)
	if err != nil {
		s.uiFail(w, r, "list builders", err)
		return
	}
	s.render(w, r, http.StatusOK, "home", "Builders", views)
}

// builderData is what the builder page shows.
type builderData struct {
	Builder builderView
	Builds  []store.Build
	Pending []store.BuildRequest
	// Parameters are the typed fields of the force form.
	Parameters []config.ForceParameter
}

func (s *Server) builderPage(w http.ResponseWriter, r *http.Request) {
	// A retired builder is shown when asked for by name: links from old
	// builds lead here, and the page says it is retired.
	b, err := s.builderByName(r, r.PathValue("name"), true)
	if err != nil {
		s.uiFail(w, r, "look up builder", err)
		return
	}
	builds, err := s.cfg.Store.Builds(r.Context(), store.BuildFilter{Builder: b.Name, Limit: 25})
	if err != nil {
		s.uiFail(w, r, "list builds", err)
		return
	}
	pending, err := s.cfg.Store.Requests(r.Context(), store.RequestFilter{
		Builder: b.Name, State: store.RequestPending, Limit: 25})
	if err != nil {
		s.uiFail(w, r, "list build requests", err)
		return
	}
	var last *store.Build
	if len(builds) > 0 {
		last = &builds[0]
	}
	data := builderData{Builder: newBuilderView(b, last), Builds: builds, Pending: pending}
	if _, st, err := s.cfg.Store.ActiveState(r.Context()); err == nil {
		data.Parameters = schedule.ForceForm(st, b.Name)
	}
	s.render(w, r, http.StatusOK, "builder", "Builder "+b.Name, data)
}

// buildsData is what the builds page shows.
type buildsData struct {
	Builds []store.Build
	State  string
	// Older is the query of the next page, filters kept.
	Older string
}

func (s *Server) buildsPage(w http.ResponseWriter, r *http.Request) {
	before, limit, ok := s.uiList(w, r, buildStates...)
	if !ok {
		return
	}
	state := r.URL.Query().Get("state")
	builds, err := s.cfg.Store.Builds(r.Context(), store.BuildFilter{
		Builder: r.URL.Query().Get("builder"), State: state, Before: before, Limit: limit + 1})
	if err != nil {
		s.uiFail(w, r, "list builds", err)
		return
	}
	pg := pageOf(builds, limit, func(b store.Build) int64 { return b.ID })
	data := buildsData{Builds: pg.Items, State: state, Older: olderQuery(r, pg.Next)}
	s.render(w, r, http.StatusOK, "builds", "Builds", data)
}

// stepView is a step on the build page: where its shown log starts.
type stepView struct {
	store.Step
	TailFrom int64
	Open     bool
}

// buildData is what the build page shows.
type buildData struct {
	Build    store.Build
	Steps    []stepView
	Events   string
	Finished bool
	// NewStep fills the template the page's script copies for steps that
	// start after the page was rendered.
	NewStep stepView
}

func (s *Server) buildPage(w http.ResponseWriter, r *http.Request) {
	id, ok := s.uiID(w, r, "id")
	if !ok {
		return
	}
	b, err := s.cfg.Store.BuildByID(r.Context(), id)
	if err != nil {
		s.uiFail(w, r, "look up build", err)
		return
	}
	steps, err := s.cfg.Store.Steps(r.Context(), id)
	if err != nil {
		s.uiFail(w, r, "list steps", err)
		return
	}
	data := buildData{Build: b, Finished: b.State == build.StateFinished,
		NewStep: stepView{Step: store.Step{BuildID: id, State: build.StateRunning}, Open: true}}
	offsets := map[int]int64{}
	for i, st := range steps {
		from, err := s.tailStart(r, st)
		if err != nil {
			s.uiFail(w, r, "read step log", err)
			return
		}
		offsets[st.Number] = from
		failed := st.Result != nil && !build.OK(*st.Result)
		open := st.State != build.StateFinished || failed || i == len(steps)-1
		data.Steps = append(data.Steps, stepView{Step: st, TailFrom: from, Open: open})
	}
	data.Events = fmt.Sprintf("/api/v1/builds/%d/events?offsets=%s", id, formatOffsets(offsets))
	s.render(w, r, http.StatusOK, "build", fmt.Sprintf("%s #%d", b.Builder, b.Number), data)
}

// tailStart returns where the shown tail of a step's log starts: about
// logTail bytes before its end, moved forward to the start of a line (or
// at least of a UTF-8 character) so the view does not open mid-character.
func (s *Server) tailStart(r *http.Request, st store.Step) (int64, error) {
	if st.LogSize <= logTail {
		return 0, nil
	}
	from := st.LogSize - logTail
	var buf bytes.Buffer
	if _, err := s.cfg.Store.WriteLog(r.Context(), &buf, st.BuildID, st.Number, from, from+4096); err != nil {
		return 0, err
	}
	head := buf.Bytes()
	if i := bytes.IndexByte(head, '\n'); i >= 0 {
		return from + int64(i) + 1, nil
	}
	skip := 0
	for skip < len(head) && skip < 3 && head[skip]&0xC0 == 0x80 {
		skip++
	}
	return from + int64(skip), nil
}

// buildsetData is what the buildset page shows.
type buildsetData struct {
	Buildset store.Buildset
	Change   *store.Change
}

func (s *Server) buildsetPage(w http.ResponseWriter, r *http.Request) {
	id, ok := s.uiID(w, r, "id")
	if !ok {
		return
	}
	bs, err := s.cfg.Store.Buildset(r.Context(), id)
	if err != nil {
		s.uiFail(w, r, "look up buildset", err)
		return
	}
	data := buildsetData{Buildset: bs}
	if bs.ChangeID != nil {
		if c, err := s.cfg.Store.Change(r.Context(), *bs.ChangeID); err == nil {
			data.Change = &c
		}
	}
	s.render(w, r, http.StatusOK, "buildset", fmt.Sprintf("Buildset %d", id), data)
}

func (s *Server) workersPage(w http.ResponseWriter, r *http.Request) {
	retired, ok := readRetired(w, r, s.errorPage)
	if !ok {
		return
	}
	workers, err := s.cfg.Store.Workers(r.Context(), retired)
	if err != nil {
		s.uiFail(w, r, "list workers", err)
		return
	}
	s.render(w, r, http.StatusOK, "workers", "Workers", workers)
}

// clusterData is what the cluster page shows.
type clusterData struct {
	Masters  []store.Master
	Services []store.Service
}

func (s *Server) clusterPage(w http.ResponseWriter, r *http.Request) {
	masters, err := s.cfg.Store.Masters(r.Context(), false)
	if err != nil {
		s.uiFail(w, r, "list masters", err)
		return
	}
	services, err := s.cfg.Store.Services(r.Context(), false)
	if err != nil {
		s.uiFail(w, r, "list services", err)
		return
	}
	s.render(w, r, http.StatusOK, "cluster", "Cluster", clusterData{Masters: masters, Services: services})
}

// changesData is what the changes page shows.
type changesData struct {
	Changes []store.Change
	// Older is the query of the next page, or "" on the last one.
	Older string
}

func (s *Server) changesPage(w http.ResponseWriter, r *http.Request) {
	before, limit, ok := s.uiList(w, r)
	if !ok {
		return
	}
	changes, err := s.cfg.Store.Changes(r.Context(), store.ListOptions{Before: before, Limit: limit + 1})
	if err != nil {
		s.uiFail(w, r, "list changes", err)
		return
	}
	pg := pageOf(changes, limit, func(c store.Change) int64 { return c.ID })
	s.render(w, r, http.StatusOK, "changes", "Changes",
		changesData{Changes: pg.Items, Older: olderQuery(r, pg.Next)})
}

// generationsData is what the generations page shows.
type generationsData struct {
	Generations []store.Generation
	// Older is the query of the next page, or "" on the last one.
	Older  string
	Active int64
}

func (s *Server) generationsPage(w http.ResponseWriter, r *http.Request) {
	before, limit, ok := s.uiList(w, r)
	if !ok {
		return
	}
	gens, err := s.cfg.Store.Generations(r.Context(), before, limit+1)
	if err != nil {
		s.uiFail(w, r, "list generations", err)
		return
	}
	active, err := s.cfg.Store.ActiveGenerationNumber(r.Context())
	if err != nil {
		s.uiFail(w, r, "look up the active generation", err)
		return
	}
	pg := pageOf(gens, limit, func(g store.Generation) int64 { return g.Number })
	s.render(w, r, http.StatusOK, "generations", "Configuration generations",
		generationsData{Generations: pg.Items, Older: olderQuery(r, pg.Next), Active: active})
}

// generationData is what a generation's page shows.
type generationData struct {
	Generation store.Generation
	Active     bool
	State      string
	// DiffFrom is the generation compared with, 0 for no configuration;
	// Plan is what applying this generation over it changed.
	DiffFrom int64
	Plan     string
}

func (s *Server) generationPage(w http.ResponseWriter, r *http.Request) {
	n, ok := s.uiID(w, r, "number")
	if !ok {
		return
	}
	g, err := s.cfg.Store.GenerationByNumber(r.Context(), n)
	if errors.Is(err, store.ErrNotFound) {
		err = fmt.Errorf("generation %d: %w", n, err)
	}
	if err != nil {
		s.uiFail(w, r, "look up generation", err)
		return
	}
	active, err := s.cfg.Store.ActiveGenerationNumber(r.Context())
	if err != nil {
		s.uiFail(w, r, "look up the active generation", err)
		return
	}
	var pretty bytes.Buffer
	if json.Indent(&pretty, g.State, "", "  ") != nil {
		pretty.Reset()
		pretty.Write(g.State)
	}
	data := generationData{Generation: g, Active: g.Number == active, State: pretty.String()}

	// Compare with ?diff=, by default with the generation before.
	from := n - 1
	if v := r.URL.Query().Get("diff"); v != "" {
		if from, err = strconv.ParseInt(v, 10, 64); err != nil || from < 1 {
			s.errorPage(w, r, http.StatusBadRequest, fmt.Sprintf("%q is not a generation number.", v))
			return
		}
	}
	plan, err := s.generationDiff(r, from, g)
	if err != nil {
		s.uiFail(w, r, "compare generations", err)
		return
	}
	data.DiffFrom, data.Plan = from, plan
	s.render(w, r, http.StatusOK, "generation", fmt.Sprintf("Generation %d", n), data)
}

// generationDiff renders what applying generation g over generation from
// (0 for no configuration) changed, as `regent config diff` shows it,
// password changes included.
func (s *Server) generationDiff(r *http.Request, from int64, g store.Generation) (string, error) {
	plan, err := s.cfg.Store.GenerationPlan(r.Context(), from, g.Number)
	if err != nil {
		return "", err
	}
	return plan.String(), nil
}
