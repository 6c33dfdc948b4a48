package web

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"

	"github.com/regent-ci/regent/internal/config"
)

// applyInput is the body of POST /api/v1/config/apply: the configuration's
// files by relative path, as `regent config apply --api` sends them.
type applyInput struct {
	Files  map[string]string `json:"files"`
	Source string            `json:"source"`
	DryRun bool              `json:"dry_run"`
}

// applyOutput answers an apply: the plan against the active generation
// and, unless it was a dry run, the generation now active.
type applyOutput struct {
	Plan       string `json:"plan"`
	Changed    bool   `json:"changed"`
	DryRun     bool   `json:"dry_run"`
	Generation int64  `json:"generation"`
	Created    bool   `json:"created"`
}

// applyError answers a configuration that does not evaluate or validate,
// with every error and its position.
type applyError struct {
	Error  string        `json:"error"`
	Errors []applyDetail `json:"errors"`
}

type applyDetail struct {
	File    string `json:"file"`
	Line    int    `json:"line"`
	Col     int    `json:"col"`
	Kind    string `json:"kind,omitempty"`
	Name    string `json:"name,omitempty"`
	Message string `json:"message"`
}

// applyConfig evaluates the posted files with this master's secrets and
// applies them as a new generation, all or nothing.
func (s *Server) applyConfig(w http.ResponseWriter, r *http.Request) {
	var in applyInput
	dec := json.NewDecoder(io.LimitReader(r.Body, config.MaxFilesBytes*2))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		writeError(w, http.StatusBadRequest, "request body: "+err.Error())
		return
	}
	dir, err := os.MkdirTemp("", "regent-apply-")
	if err != nil {
		s.fail(w, r, "apply configuration", err)
		return
	}
	defer os.RemoveAll(dir)
	if err := config.WriteFiles(dir, in.Files); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	st, err := config.Load(r.Context(), dir, config.Options{Secrets: s.cfg.Secrets})
	if err != nil {
		s.refuseConfig(w, err)
		return
	}
	// The plan compares passwords with the stored digests and names the
	// retired builders that previous_names bring back, as the apply will.
	plan, err := s.cfg.Store.Plan(r.Context(), st)
	if err != nil {
		s.fail(w, r, "compare with the active generation", err)
		return
	}
	out := applyOutput{Plan: plan.String(), Changed: !plan.Empty(), DryRun: in.DryRun}
	if in.DryRun {
		writeJSON(w, http.StatusOK, out)
		return
	}
	source := in.Source
	if source == "" {
		source = "api"
	}
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	res, err := s.cfg.Store.Apply(r.Context(), st, source, "api:"+host)
	if err != nil {
		s.fail(w, r, "apply configuration", err)
		return
	}
	if res.Created {
		s.log.Info("generation applied", "generation", res.Generation.Number, "source", source,
			"by", "api:"+host, "cancelled_requests", res.CancelledRequests)
		s.cfg.Wake()
	}
	out.Generation, out.Created = res.Generation.Number, res.Created
	writeJSON(w, http.StatusOK, out)
}

// refuseConfig answers 422 with every error of an invalid configuration.
func (s *Server) refuseConfig(w http.ResponseWriter, err error) {
	body := applyError{Error: "configuration refused; the active generation is unchanged:\n" + err.Error()}
	var list config.Errors
	if errors.As(err, &list) {
		for _, e := range list {
			body.Errors = append(body.Errors, applyDetail{File: e.Pos.File, Line: e.Pos.Line,
				Col: e.Pos.Col, Kind: e.Kind, Name: e.Name, Message: e.Msg})
		}
	}
	writeJSON(w, http.StatusUnprocessableEntity, body)
}
