package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/regent-ci/regent/internal/workerapi"
)

// defaultPollTimeout is assumed when a master does not say how long it
// holds a poll; pollSlack is how much longer the worker waits for it.
const (
	defaultPollTimeout = 30 * time.Second
	pollSlack          = 15 * time.Second
)

// quickPoll is how fast an answer with nothing new must come for the next
// poll to wait: a master repeats a cancel order on every poll until the
// build ends, and a build may take Config.KillGrace to die.
const quickPoll = time.Second

var (
	// errRefused: a master refused the worker's credentials.
	errRefused = errors.New("credentials refused")
	// errPollInterrupted: the worker ended its own poll, to report new
	// capacity or to log in again.
	errPollInterrupted = errors.New("poll interrupted")
	// errSessionEnded: a master answered the poll with 401.
	errSessionEnded = errors.New("session ended")
)

// sessionInfo is a session opened at a master.
type sessionInfo struct {
	workerapi.SessionResponse
	via string
}

// inflightPoll is the poll being held open at a master.
type inflightPoll struct {
	cancel   context.CancelCauseFunc
	capacity int
}

// loop is the worker's one poll loop: it keeps a session open, polls,
// and starts and cancels builds as the masters say. It returns when ctx
// ends, and then waits for the builds.
func (w *Worker) loop(ctx context.Context) {
	defer w.shutdown(ctx)
	bo := newBackoff(w.cfg.BackoffMin, w.cfg.BackoffMax)
	refusedBo := newBackoff(w.cfg.BackoffMax, 6*w.cfg.BackoffMax)
	quietBo := newBackoff(w.cfg.BackoffMin, w.cfg.BackoffMax)
	pollTimeout := defaultPollTimeout

	for ctx.Err() == nil {
		token, _ := w.client.session()
		if token == "" {
			s, err := w.login(ctx, bo, refusedBo)
			if err != nil {
				return
			}
			if s.PollTimeoutSeconds > 0 {
				pollTimeout = time.Duration(s.PollTimeoutSeconds) * time.Second
				w.client.useHold(pollTimeout)
			}
			w.adoptMaxBuilds(s.MaxBuilds)
			continue
		}

		sent := time.Now()
		resp, err := w.pollOnce(ctx, token, pollTimeout)
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, errPollInterrupted):
			continue
		case errors.Is(err, errSessionEnded):
			w.log.Info("the session ended; logging in again")
			w.client.dropSession(token)
			continue
		case err != nil:
			if !errors.Is(err, errUnavailable) {
				w.log.Error("poll failed", "err", err)
			}
			_ = bo.wait(ctx)
			continue
		}
		bo.reset()

		if resp.Stop {
			w.stopByMaster(resp.Reason)
			return
		}
		if w.apply(ctx, resp) || time.Since(sent) >= quickPoll {
			quietBo.reset()
			continue
		}
		w.pause(ctx, quietBo.next())
	}
}

// pause waits for d, or less if a build ends meanwhile.
func (w *Worker) pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-w.ended:
	case <-ctx.Done():
	}
}

// login opens a session, retrying until it succeeds or ctx ends. A worker
// whose credentials are refused keeps trying, slowly, and says so.
func (w *Worker) login(ctx context.Context, bo, refusedBo *backoff) (sessionInfo, error) {
	for {
		s, err := w.client.login(ctx)
		switch {
		case err == nil:
			bo.reset()
			refusedBo.reset()
			w.log.Info("session started", "master", s.via, "master_name", s.Master,
				"session_id", s.SessionID)
			return s, nil
		case ctx.Err() != nil:
			return sessionInfo{}, context.Cause(ctx)
		case errors.Is(err, errRefused):
			delay := refusedBo.next()
			w.log.Warn("the master refuses this worker's name or password; "+
				"check the worker's credentials and the master's configuration",
				"err", err, "retry_in", delay.Round(time.Millisecond))
			if sleep(ctx, delay) != nil {
				return sessionInfo{}, context.Cause(ctx)
			}
		default:
			if !errors.Is(err, errUnavailable) {
				w.log.Error("log in failed", "err", err)
			}
			if bo.wait(ctx) != nil {
				return sessionInfo{}, context.Cause(ctx)
			}
		}
	}
}

// pollOnce reports the running builds and waits for the master's orders.
// A poll sent with no capacity is interrupted when a build ends, so the
// master hears of the free slot at once; a poll with capacity is never
// interrupted for that, because its answer may carry a build already
// claimed for this worker.
func (w *Worker) pollOnce(ctx context.Context, token string, hold time.Duration) (workerapi.PollResponse, error) {
	running, capacity := w.running()
	pctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	w.mu.Lock()
	w.poll = &inflightPoll{cancel: cancel, capacity: capacity}
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.poll = nil
		w.mu.Unlock()
	}()

	req := jsonRequest("/poll", workerapi.PollRequest{Running: running, Capacity: capacity, Wait: true})
	req.token = token
	// Wait a little longer than the hold, never more than half the hold
	// again (the hold is a quarter of the worker time-to-live).
	req.timeout = hold + min(pollSlack, max(hold/2, time.Second))
	w.log.Debug("polling", "running", running, "capacity", capacity)
	rep, err := w.client.do(pctx, req)
	if err != nil {
		if ctx.Err() == nil && errors.Is(context.Cause(pctx), errPollInterrupted) {
			return workerapi.PollResponse{}, errPollInterrupted
		}
		return workerapi.PollResponse{}, err
	}

	var resp workerapi.PollResponse
	switch {
	case rep.status == http.StatusUnauthorized:
		return resp, fmt.Errorf("%w at %s: %s", errSessionEnded, rep.master, rep.errorText())
	case rep.status/100 != 2:
		return resp, fmt.Errorf("poll at %s: %d %s", rep.master, rep.status, rep.errorText())
	}
	if err := json.Unmarshal(rep.body, &resp); err != nil {
		return resp, fmt.Errorf("poll at %s: unreadable answer: %w", rep.master, err)
	}
	return resp, nil
}

// interruptPoll ends the poll in flight: always when the session was
// dropped, else only when it was sent with no capacity.
func (w *Worker) interruptPoll(always bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.poll != nil && (always || w.poll.capacity == 0) {
		w.poll.cancel(errPollInterrupted)
		w.poll = nil
	}
}

// apply carries out a master's orders, cancellations first, then new
// builds, and reports whether any of them was new.
func (w *Worker) apply(ctx context.Context, resp workerapi.PollResponse) bool {
	news := len(resp.Builds) > 0
	for _, id := range resp.Cancel {
		if w.cancelBuild(id) {
			news = true
		}
	}
	for _, a := range resp.Builds {
		w.mu.Lock()
		_, dup := w.builds[a.BuildID]
		full := len(w.builds) >= w.maxBuilds
		maxBuilds := w.maxBuilds
		w.mu.Unlock()
		switch {
		case dup:
			// A master offers a build again when a report made before the
			// build arrived lacks it.
			w.log.Info("the master offered again a build that runs here already; ignoring it",
				"build_id", a.BuildID)
			continue
		case full:
			// Refusing is not in the protocol and dropping would lose the
			// build until the master noticed; run it and say so.
			w.log.Warn("the master handed out more builds than this worker takes; running it anyway",
				"build_id", a.BuildID, "max_builds", maxBuilds)
		}
		w.startBuild(ctx, a)
	}
	return news
}
