package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/regent-ci/regent/internal/workerapi"
)

// Log delivery pacing: output is sent as soon as it comes after a quiet
// spell, then in batches of at most logChunk bytes at most every
// flushInterval, so that a chatty step does not make a request per line.
const (
	logChunk      = 64 << 10
	flushInterval = 200 * time.Millisecond
)

// maxFinishRefusals bounds how often a step finish is retried when the
// master says the log is incomplete although it claims to hold all of it.
const maxFinishRefusals = 5

// deliver reports every step and then the build's result. When a master
// refuses the attempt, it abandons the build: the steps are stopped and
// nothing more is sent.
func (b *buildRun) deliver() {
	bo := newBackoff(b.w.cfg.BackoffMin, b.w.cfg.BackoffMax)
	for st := range b.steps {
		if err := b.deliverStep(bo, st); err != nil {
			b.abandon(err)
			for range b.steps {
				// Let the executor finish; its steps are being stopped.
			}
			return
		}
	}
	if err := b.deliverResult(bo); err != nil {
		b.abandon(err)
	}
}

// abandon stops the build because its attempt may not report any more, or
// because reporting was stopped. The reason goes to the worker's log.
func (b *buildRun) abandon(err error) {
	b.stopExec(err)
	b.stopReport(err)
	switch {
	case errors.Is(err, errStale):
		b.log.Warn("abandoning build: the master no longer accepts this attempt", "err", err)
	case errors.Is(err, errWriteRefused):
		b.log.Error("abandoning build: the master refused its report", "err", err)
	default:
		b.log.Info("abandoning build report", "err", err)
	}
}

// deliverStep sends a step's start, its whole log and its finish.
func (b *buildRun) deliverStep(bo *backoff, st *stepReport) error {
	defer st.spool.remove()
	path := fmt.Sprintf("/builds/%d/steps/%d", b.a.BuildID, st.number)
	start := workerapi.StepStart{AttemptToken: b.a.AttemptToken, Name: st.name}
	if err := b.postJSON(bo, path+"/start", start); err != nil {
		return err
	}
	if err := b.shipLog(bo, st, 0); err != nil {
		return err
	}
	select {
	case <-st.done:
	case <-b.report.Done():
		return fmt.Errorf("deliver step %d: %w", st.number, b.reportStopped())
	}

	size, _ := st.spool.state()
	finish := workerapi.StepFinish{
		AttemptToken: b.a.AttemptToken,
		Result:       st.outcome.result,
		Reason:       st.outcome.reason,
		Properties:   st.props,
		LogSize:      size,
	}
	for refusals := 0; ; {
		rep, err := b.w.client.call(b.report, bo, jsonRequest(path+"/finish", finish))
		if err != nil {
			return err
		}
		if rep.status/100 == 2 {
			return nil
		}
		if rep.status != http.StatusConflict {
			return refused(rep, "finish step %d", st.number)
		}
		// Either the attempt is stale or the master lacks log bytes; an
		// empty append at our size tells which, and from where to resend.
		stored, err := b.appendLog(bo, st.number, size, nil)
		if err != nil {
			return err
		}
		if stored < size {
			b.log.Info("master lacks log bytes; sending them again",
				"step", st.number, "master_size", stored, "log_size", size)
			if err := b.shipLog(bo, st, stored); err != nil {
				return err
			}
			continue
		}
		if refusals++; refusals >= maxFinishRefusals {
			return refused(rep, "finish step %d with all %d log bytes delivered", st.number, size)
		}
		if err := bo.wait(b.report); err != nil {
			return b.reportStopped()
		}
	}
}

// shipLog sends the spool from offset from until the step has ended and
// the master holds every byte, pacing the sends as described at logChunk.
func (b *buildRun) shipLog(bo *backoff, st *stepReport, from int64) error {
	buf := make([]byte, logChunk)
	acked := from
	var lastSend time.Time
	for {
		size, closed := st.spool.state()
		if acked > size {
			return fmt.Errorf("%w: step %d: the master says it holds %d log bytes of %d",
				errWriteRefused, st.number, acked, size)
		}
		pending := size - acked
		if pending == 0 && closed {
			return nil
		}
		wait := flushInterval - time.Since(lastSend)
		if pending > 0 && (pending >= logChunk || closed || wait <= 0) {
			n, err := st.spool.readAt(buf[:min(pending, logChunk)], acked)
			if err != nil {
				return fmt.Errorf("read log spool of step %d: %w", st.number, err)
			}
			lastSend = time.Now()
			stored, err := b.appendLog(bo, st.number, acked, buf[:n])
			if err != nil {
				return err
			}
			if stored <= acked {
				// No progress (a gap, or a master that stored nothing):
				// do not spin on it.
				if err := bo.wait(b.report); err != nil {
					return b.reportStopped()
				}
			}
			acked = stored
			continue
		}

		var timer <-chan time.Time
		if pending > 0 {
			timer = time.After(wait)
		}
		select {
		case <-st.spool.notify:
		case <-timer:
		case <-b.report.Done():
			return b.reportStopped()
		}
	}
}

// appendLog sends data as the step's log bytes from offset and returns how
// many bytes the master now stores for the step.
func (b *buildRun) appendLog(bo *backoff, step int, offset int64, data []byte) (int64, error) {
	// The attempt token goes in a header only, to keep it out of URLs
	// and access logs.
	q := url.Values{}
	q.Set("offset", strconv.FormatInt(offset, 10))
	req := request{
		method: http.MethodPost,
		path:   fmt.Sprintf("/builds/%d/steps/%d/log", b.a.BuildID, step),
		query:  q,
		header: http.Header{
			"Content-Type":          {"application/octet-stream"},
			workerapi.HeaderAttempt: {b.a.AttemptToken},
		},
		body: data,
	}
	for {
		rep, err := b.w.client.call(b.report, bo, req)
		if err != nil {
			return 0, err
		}
		var ack struct {
			Size *int64 `json:"size"`
		}
		readable := json.Unmarshal(rep.body, &ack) == nil && ack.Size != nil
		switch {
		case readable && (rep.status/100 == 2 || rep.status == http.StatusConflict):
			return *ack.Size, nil
		case rep.status == http.StatusConflict:
			return 0, refused(rep, "append log of step %d", step)
		case rep.status/100 == 2:
			// Appends are idempotent by offset: sending again is safe.
			b.log.Warn("unreadable log acknowledgement; sending again",
				"master", rep.master, "body", string(rep.body))
			if err := bo.wait(b.report); err != nil {
				return 0, b.reportStopped()
			}
		default:
			return 0, refused(rep, "append log of step %d", step)
		}
	}
}

// deliverResult sends the build's result until a master takes it.
func (b *buildRun) deliverResult(bo *backoff) error {
	finish := workerapi.BuildFinish{
		AttemptToken: b.a.AttemptToken,
		Result:       b.final.result,
		Reason:       b.final.reason,
	}
	path := fmt.Sprintf("/builds/%d/finish", b.a.BuildID)
	if err := b.postJSON(bo, path, finish); err != nil {
		return err
	}
	b.log.Info("build finished", "result", finish.Result, "reason", finish.Reason)
	return nil
}

// postJSON sends v until a master answers anything but a failure of its
// own, and turns a refusal into an error.
func (b *buildRun) postJSON(bo *backoff, path string, v any) error {
	rep, err := b.w.client.call(b.report, bo, jsonRequest(path, v))
	if err != nil {
		return err
	}
	if rep.status/100 != 2 {
		return refused(rep, "POST %s", path)
	}
	return nil
}

// jsonRequest is a POST of v as JSON.
func jsonRequest(path string, v any) request {
	body, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("marshal %T: %v", v, err)) // wire types always marshal
	}
	return request{
		method: http.MethodPost,
		path:   path,
		header: http.Header{"Content-Type": {"application/json"}},
		body:   body,
	}
}

// refused turns a master's refusal into errStale (409) or errWriteRefused.
func refused(rep reply, what string, args ...any) error {
	sentinel := errWriteRefused
	if rep.status == http.StatusConflict {
		sentinel = errStale
	}
	return fmt.Errorf("%w: %s: %s answered %d: %s",
		sentinel, fmt.Sprintf(what, args...), rep.master, rep.status, rep.errorText())
}

// reportStopped is the error for reporting that was stopped from outside.
func (b *buildRun) reportStopped() error {
	return fmt.Errorf("report stopped: %w", context.Cause(b.report))
}
