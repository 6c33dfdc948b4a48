package master

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/regent-ci/regent/internal/store"
)

// clusterAPI serves the cluster's resources of the REST API:
//
//	GET /api/v1/masters[?include=ended]   live incarnations (and ended ones)
//	GET /api/v1/services[?include=retired] clustered services with owners
//
// Both answer a list, {"items": [...], "next": null}.
type clusterAPI struct {
	store *store.Store
	log   *slog.Logger
}

func (a clusterAPI) register(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/masters", a.masters)
	mux.HandleFunc("GET /api/v1/services", a.services)
}

func (a clusterAPI) masters(w http.ResponseWriter, r *http.Request) {
	if all, ok := include(w, r, "ended"); ok {
		ms, err := a.store.Masters(r.Context(), all)
		a.writeList(w, ms, err)
	}
}

func (a clusterAPI) services(w http.ResponseWriter, r *http.Request) {
	if all, ok := include(w, r, "retired"); ok {
		svs, err := a.store.Services(r.Context(), all)
		a.writeList(w, svs, err)
	}
}

// include reads the include parameter, which may only name what; any
// other value is answered 400 here.
func include(w http.ResponseWriter, r *http.Request, what string) (all, ok bool) {
	switch v := r.URL.Query().Get("include"); v {
	case "":
		return false, true
	case what:
		return true, true
	default:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]string{
			"error": fmt.Sprintf("include must be %q, not %q", what, v)})
		return false, false
	}
}

// writeList answers items as an API list; an error goes to the log, and
// the client learns only that the cluster could not be read.
func (a clusterAPI) writeList(w http.ResponseWriter, items any, err error) {
	w.Header().Set("Content-Type", "application/json")
	body := map[string]any{"items": items, "next": nil}
	if err != nil {
		a.log.Error("read the cluster for the API", "err", err)
		w.WriteHeader(http.StatusInternalServerError)
		body = map[string]any{"error": "could not read the cluster; see the master's log"}
	}
	_ = json.NewEncoder(w).Encode(body) // a client gone away is not our error
}
