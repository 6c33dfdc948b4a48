package workerapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/regent-ci/regent/internal/config"
	"github.com/regent-ci/regent/internal/schedule"
	"github.com/regent-ci/regent/internal/store"
)

// TriggerRequest starts the builds of a trigger step.
type TriggerRequest struct {
	AttemptToken string `json:"attempt_token"`
	// Name is the step's name, recorded if the step's start has not
	// arrived yet.
	Name string `json:"name"`
}

// TriggerStatus answers a trigger step: the builds it started and, once
// all of them have ended, the worst of their results.
type TriggerStatus struct {
	Done   bool             `json:"done"`
	Result string           `json:"result,omitempty"`
	Builds []TriggeredBuild `json:"builds"`
}

// TriggeredBuild is one build request a trigger step started.
type TriggeredBuild struct {
	RequestID int64   `json:"request_id"`
	Builder   string  `json:"builder"`
	Scheduler string  `json:"scheduler"`
	State     string  `json:"state"`
	BuildID   *int64  `json:"build_id,omitempty"`
	Result    *string `json:"result,omitempty"`
}

// trigger starts the builds of trigger step n through the triggerable
// schedulers the step names, and answers their status. A retry starts
// nothing twice (see schedule.Trigger). The step is recorded as started,
// which checks the attempt token in the same stroke.
func (s *Server) trigger(w http.ResponseWriter, r *http.Request, sess store.Session) {
	id, n, err := pathIDs(r)
	var body TriggerRequest
	if err == nil {
		err = decode(r, &body)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ctx := r.Context()
	if err := s.cfg.Store.StartStep(ctx, id, body.AttemptToken, n, body.Name); err != nil {
		s.answer(w, err, nil)
		return
	}
	b, err := s.cfg.Store.BuildByID(ctx, id)
	if err != nil {
		s.answer(w, err, nil)
		return
	}
	st, err := s.triggerStep(ctx, b.Builder, n)
	if err != nil {
		writeError(w, http.StatusConflict, err.Error())
		return
	}
	bss, err := schedule.Trigger(ctx, s.cfg.Store, b, n, st.Schedulers, nil)
	if errors.Is(err, schedule.ErrNotTriggerable) {
		writeError(w, http.StatusUnprocessableEntity, err.Error())
		return
	}
	if err != nil {
		s.internal(w, "trigger builds", err)
		return
	}
	s.log.Info("builds triggered", "build", id, "step", n, "buildsets", len(bss),
		"worker", sess.WorkerName)
	s.cfg.Wake.Notify() // idle workers may take the new requests at once
	s.triggerStatus(w, r, id, n)
}

// triggerProgress answers the status of the builds trigger step n
// started, for a worker whose step waits for them. Only the worker
// running the build may ask.
func (s *Server) triggerProgress(w http.ResponseWriter, r *http.Request, sess store.Session) {
	id, n, err := pathIDs(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	b, err := s.cfg.Store.BuildByID(r.Context(), id)
	if err != nil {
		s.answer(w, err, nil)
		return
	}
	if b.Worker == nil || *b.Worker != sess.WorkerName {
		writeError(w, http.StatusConflict, fmt.Sprintf("build %d does not run on worker %s",
			id, sess.WorkerName))
		return
	}
	s.triggerStatus(w, r, id, n)
}

func (s *Server) triggerStatus(w http.ResponseWriter, r *http.Request, id int64, n int) {
	done, result, children, err := schedule.TriggerOutcome(r.Context(), s.cfg.Store, id, n)
	if err != nil {
		s.internal(w, "look up triggered builds", err)
		return
	}
	out := TriggerStatus{Done: done, Result: result, Builds: []TriggeredBuild{}}
	for _, c := range children {
		out.Builds = append(out.Builds, TriggeredBuild{RequestID: c.ID, Builder: c.Builder,
			Scheduler: c.Scheduler, State: c.State, BuildID: c.Build, Result: c.Result})
	}
	writeJSON(w, http.StatusOK, out)
}

// triggerStep returns step n of the builder as the active configuration
// has it, which must be a trigger step.
//
// TODO(#6): read the step from the build's own recorded steps, so that a
// configuration applied while the build runs cannot change the trigger.
func (s *Server) triggerStep(ctx context.Context, builder string, n int) (config.Step, error) {
	bu, err := s.cfg.Store.BuilderByName(ctx, builder)
	if err != nil {
		return config.Step{}, fmt.Errorf("look up builder %q: %w", builder, err)
	}
	var spec config.Builder
	if err := json.Unmarshal(bu.Spec, &spec); err != nil {
		return config.Step{}, fmt.Errorf("decode builder %q: %w", builder, err)
	}
	if n > len(spec.Steps) || spec.Steps[n-1].Kind != config.StepTrigger {
		return config.Step{}, fmt.Errorf("step %d of builder %q is not a trigger step in "+
			"the active configuration", n, builder)
	}
	return spec.Steps[n-1], nil
}
