package workerapi

import (
	"context"
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
	st, err := s.triggerStep(ctx, b, n)
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

// triggerStep returns step n of the build as it was started, which must
// be a trigger step; a configuration applied since does not change it.
func (s *Server) triggerStep(ctx context.Context, b store.Build, n int) (config.Step, error) {
	steps, err := s.cfg.Store.BuildSteps(ctx, b.ID)
	if err != nil {
		return config.Step{}, err
	}
	if n > len(steps) || steps[n-1].Kind != config.StepTrigger {
		return config.Step{}, fmt.Errorf("step %d of build %d is not a trigger step", n, b.ID)
	}
	return steps[n-1], nil
}
