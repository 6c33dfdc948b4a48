package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/regent-ci/regent/internal/build"
	"github.com/regent-ci/regent/internal/config"
	"github.com/regent-ci/regent/internal/workerapi"
)

// triggerPoll is how often a waiting trigger step asks a master whether
// the builds it started have ended.
const triggerPoll = time.Second

// triggerStep asks a master to start the builds of the step's triggerable
// schedulers and, when the step waits, asks again every triggerPoll until
// they have all ended, taking the worst of their results. Cancelling the
// parent build stops the wait here; the master cancels the children.
func (b *buildRun) triggerStep(number int, st config.Step, sp *spool) outcome {
	path := fmt.Sprintf("/builds/%d/steps/%d/trigger", b.a.BuildID, number)
	bo := newBackoff(b.w.cfg.BackoffMin, b.w.cfg.BackoffMax)
	status, o := b.triggerCall(bo, jsonRequest(path, workerapi.TriggerRequest{
		AttemptToken: b.a.AttemptToken, Name: stepName(st)}))
	if !o.ok() {
		return o
	}
	for _, c := range status.Builds {
		fmt.Fprintf(sp, "triggered %s through %s (build request %d)\n",
			c.Builder, c.Scheduler, c.RequestID)
	}
	if !st.Wait {
		return outcome{result: build.Success}
	}
	for !status.Done {
		if sleep(b.exec, triggerPoll) != nil {
			return stoppedOutcome(context.Cause(b.exec))
		}
		if status, o = b.triggerCall(bo, request{method: http.MethodGet, path: path}); !o.ok() {
			return o
		}
	}
	for _, c := range status.Builds {
		r := "none"
		if c.Result != nil {
			r = *c.Result
		}
		fmt.Fprintf(sp, "%s (build request %d) ended: %s\n", c.Builder, c.RequestID, r)
	}
	if build.OK(status.Result) {
		return outcome{result: status.Result}
	}
	return outcome{status.Result, "a triggered build ended " + status.Result}
}

// triggerCall sends one trigger request and reads the status it answers.
func (b *buildRun) triggerCall(bo *backoff, req request) (workerapi.TriggerStatus, outcome) {
	var status workerapi.TriggerStatus
	rep, err := b.w.client.call(b.exec, bo, req)
	if err == nil && rep.status/100 != 2 {
		err = refused(rep, "%s trigger step", req.method)
	}
	if err == nil {
		if jerr := json.Unmarshal(rep.body, &status); jerr != nil {
			err = fmt.Errorf("unreadable trigger status from %s: %w", rep.master, jerr)
		}
	}
	if err != nil {
		if cause := context.Cause(b.exec); cause != nil {
			return status, stoppedOutcome(cause)
		}
		return status, outcome{build.Exception, fmt.Sprintf("trigger: %v", err)}
	}
	return status, outcome{result: build.Success}
}
