package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/regent-ci/regent/internal/schedule"
	"github.com/regent-ci/regent/internal/store"
)

// maxActionBody bounds the body of an action request.
const maxActionBody = 1 << 20

// forceInput is the body of a force request.
type forceInput struct {
	Reason     string                     `json:"reason"`
	Properties map[string]json.RawMessage `json:"properties"`
}

// reasonInput is the optional body of a cancel request.
type reasonInput struct {
	Reason string `json:"reason"`
}

// errBodyTooLarge marks a request body over the limit, answered 413.
var errBodyTooLarge = errors.New("body too large")

// writeBodyError answers a body decodeBody refused.
func writeBodyError(w http.ResponseWriter, err error) {
	status := http.StatusBadRequest
	if errors.Is(err, errBodyTooLarge) {
		status = http.StatusRequestEntityTooLarge
	}
	writeError(w, status, err.Error())
}

// decodeBody reads an optional JSON object body into v, refusing unknown
// fields so that a misspelt one is not silently ignored.
func decodeBody(r *http.Request, v any) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxActionBody+1))
	if err != nil {
		return fmt.Errorf("read request body: %w", err)
	}
	if len(body) > maxActionBody {
		return fmt.Errorf("request body is larger than %d bytes: %w", maxActionBody, errBodyTooLarge)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("request body is not the expected JSON object: %w", err)
	}
	if dec.More() {
		return errors.New("request body holds more than one JSON value")
	}
	return nil
}

// propertyValues turns JSON property values into the strings properties
// are: a string as is, a number or boolean in its JSON spelling.
func propertyValues(in map[string]json.RawMessage) (map[string]string, error) {
	out := make(map[string]string, len(in))
	for k, raw := range in {
		if k == "" {
			return nil, errors.New("a property name is empty")
		}
		var v any
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("property %q: %w", k, err)
		}
		switch x := v.(type) {
		case string:
			out[k] = x
		case json.Number:
			out[k] = x.String()
		case bool:
			out[k] = strconv.FormatBool(x)
		default:
			return nil, fmt.Errorf("property %q must be a string, number or boolean", k)
		}
	}
	return out, nil
}

// force creates a buildset for one active builder.
func (s *Server) force(ctx context.Context, builder, reason string, props map[string]string) (store.Buildset, error) {
	b, err := s.cfg.Store.BuilderByName(ctx, builder)
	if errors.Is(err, store.ErrNotFound) {
		return store.Buildset{}, fmt.Errorf("builder %q does not exist: %w", builder, err)
	}
	if err != nil {
		return store.Buildset{}, err
	}
	if b.RetiredGeneration != nil {
		return store.Buildset{}, fmt.Errorf("builder %q was retired in generation %d and cannot "+
			"be forced: %w", builder, *b.RetiredGeneration, store.ErrNotFound)
	}
	_, state, err := s.cfg.Store.ActiveState(ctx)
	if err != nil {
		return store.Buildset{}, err
	}
	if props, err = schedule.ForceProperties(state, builder, props); err != nil {
		return store.Buildset{}, err
	}
	bs, err := schedule.Force(ctx, s.cfg.Store, builder, reason, props)
	if err != nil {
		return store.Buildset{}, err
	}
	s.cfg.Wake()
	s.log.Info("build forced", "builder", builder, "buildset", bs.ID, "reason", bs.Reason)
	return bs, nil
}

// cancel asks for a running build to be cancelled.
func (s *Server) cancel(ctx context.Context, id int64, reason string) error {
	if err := s.cfg.Store.CancelBuild(ctx, id, reason); err != nil {
		return err
	}
	s.cfg.Wake()
	s.log.Info("build cancel requested", "build", id, "reason", reason)
	return nil
}

// rebuild creates a buildset for the builder of a build, with the
// properties of the build's buildset (the change's revision, branch and
// repository among them).
func (s *Server) rebuild(ctx context.Context, id int64, by string) (store.Buildset, error) {
	b, err := s.cfg.Store.BuildByID(ctx, id)
	if err != nil {
		return store.Buildset{}, err
	}
	builder, err := s.cfg.Store.BuilderByName(ctx, b.Builder)
	if err != nil {
		return store.Buildset{}, err
	}
	if builder.RetiredGeneration != nil {
		return store.Buildset{}, fmt.Errorf("builder %q was retired in generation %d; "+
			"its builds cannot be rebuilt: %w", b.Builder, *builder.RetiredGeneration, store.ErrConflict)
	}
	orig, err := s.cfg.Store.Buildset(ctx, b.BuildsetID)
	if err != nil {
		return store.Buildset{}, fmt.Errorf("look up buildset %d of build %d: %w", b.BuildsetID, id, err)
	}
	bs, _, err := s.cfg.Store.CreateBuildset(ctx, store.BuildsetInput{
		Reason:     fmt.Sprintf("rebuild of build %d", id),
		Scheduler:  "rebuild",
		Properties: orig.Properties,
		Builders:   []string{b.Builder},
	})
	if err != nil {
		return store.Buildset{}, err
	}
	s.cfg.Wake()
	s.log.Info("rebuild requested", "build", id, "builder", b.Builder, "buildset", bs.ID, "by", by)
	return bs, nil
}

// cancelRequestByID cancels a pending build request.
func (s *Server) cancelRequestByID(ctx context.Context, id int64, reason string) error {
	if err := s.cfg.Store.CancelRequest(ctx, id, reason); err != nil {
		return err
	}
	s.cfg.Wake()
	s.log.Info("build request cancelled", "request", id, "reason", reason)
	return nil
}

func (s *Server) forceBuild(w http.ResponseWriter, r *http.Request) {
	var in forceInput
	if err := decodeBody(r, &in); err != nil {
		writeBodyError(w, err)
		return
	}
	props, err := propertyValues(in.Properties)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if in.Reason == "" {
		in.Reason = "forced through the API"
	}
	bs, err := s.force(r.Context(), r.PathValue("name"), in.Reason, props)
	if errors.Is(err, schedule.ErrInvalidForce) {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err != nil {
		s.fail(w, r, "force build", err)
		return
	}
	w.Header().Set("Location", fmt.Sprintf("/api/v1/buildsets/%d", bs.ID))
	writeJSON(w, http.StatusCreated, withRequests(bs))
}

// cancelInput reads the id a cancellation names and the reason its body
// gives, answering the error itself when there is one.
func cancelInput(w http.ResponseWriter, r *http.Request) (id int64, reason string, ok bool) {
	if id, ok = pathID(w, r, "id"); !ok {
		return 0, "", false
	}
	var in reasonInput
	if err := decodeBody(r, &in); err != nil {
		writeBodyError(w, err)
		return 0, "", false
	}
	if in.Reason == "" {
		in.Reason = "cancelled through the API"
	}
	return id, in.Reason, true
}

func (s *Server) cancelBuild(w http.ResponseWriter, r *http.Request) {
	id, reason, ok := cancelInput(w, r)
	if !ok {
		return
	}
	if err := s.cancel(r.Context(), id, reason); err != nil {
		s.fail(w, r, "cancel build", err)
		return
	}
	b, err := s.cfg.Store.BuildByID(r.Context(), id)
	if err != nil {
		s.fail(w, r, "look up build", err)
		return
	}
	writeJSON(w, http.StatusAccepted, showBuild(b))
}

func (s *Server) rebuildBuild(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r, "id")
	if !ok {
		return
	}
	bs, err := s.rebuild(r.Context(), id, "api")
	if err != nil {
		s.fail(w, r, "rebuild", err)
		return
	}
	w.Header().Set("Location", fmt.Sprintf("/api/v1/buildsets/%d", bs.ID))
	writeJSON(w, http.StatusCreated, withRequests(bs))
}

func (s *Server) cancelRequest(w http.ResponseWriter, r *http.Request) {
	id, reason, ok := cancelInput(w, r)
	if !ok {
		return
	}
	if _, err := s.requestByID(r, id); err != nil {
		s.fail(w, r, "look up build request", err)
		return
	}
	if err := s.cancelRequestByID(r.Context(), id, reason); err != nil {
		s.fail(w, r, "cancel build request", err)
		return
	}
	req, err := s.requestByID(r, id)
	if err != nil {
		s.fail(w, r, "look up build request", err)
		return
	}
	writeJSON(w, http.StatusOK, req)
}
