package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/regent-ci/regent/internal/build"
	"github.com/regent-ci/regent/internal/workerapi"
)

// A step that names locks asks a master for them before it runs, again
// every lockRetry while a lock has no room, and gives them back as soon as
// it ends, waiting at most lockReleaseWait for a master to answer; a
// release that does not get through is done by the master when the step's
// finish arrives.
const (
	lockRetry       = 500 * time.Millisecond
	lockReleaseWait = 10 * time.Second
)

// acquireLocks waits until the step holds the locks it names. It notes
// the wait in the step's log, and returns a non-ok outcome if the build
// is stopped meanwhile or a master refuses the request.
func (b *buildRun) acquireLocks(number int, names []string, sp *spool) outcome {
	path := fmt.Sprintf("/builds/%d/steps/%d/locks/acquire", b.a.BuildID, number)
	req := jsonRequest(path, workerapi.AttemptRequest{AttemptToken: b.a.AttemptToken})
	bo := newBackoff(b.w.cfg.BackoffMin, b.w.cfg.BackoffMax)
	start := time.Now()
	waiting := ""
	for {
		rep, err := b.w.client.call(b.exec, bo, req)
		if err != nil {
			return b.lockFailure(err)
		}
		if rep.status/100 != 2 {
			return b.lockFailure(refused(rep, "acquire the locks of step %d", number))
		}
		var g workerapi.LockGrant
		if err := json.Unmarshal(rep.body, &g); err != nil {
			return b.lockFailure(fmt.Errorf("unreadable answer from %s: %w", rep.master, err))
		}
		if g.Acquired {
			if waiting != "" {
				fmt.Fprintf(sp, "[regent: acquired lock(s) %s after waiting %s]\n",
					strings.Join(names, ", "), time.Since(start).Round(100*time.Millisecond))
			}
			return outcome{result: build.Success}
		}
		if g.Waiting != waiting {
			waiting = g.Waiting
			fmt.Fprintf(sp, "[regent: waiting for lock %q]\n", waiting)
			b.log.Info("step waits for a lock", "step", number, "lock", waiting)
		}
		if sleep(b.exec, lockRetry) != nil {
			return stoppedOutcome(context.Cause(b.exec))
		}
	}
}

// lockFailure is the outcome of a step whose locks could not be had.
func (b *buildRun) lockFailure(err error) outcome {
	if cause := context.Cause(b.exec); cause != nil {
		return stoppedOutcome(cause)
	}
	return outcome{build.Exception, fmt.Sprintf("acquire locks: %v", err)}
}

// releaseLocks gives back the locks of a step that has ended.
func (b *buildRun) releaseLocks(number int) {
	ctx, cancel := context.WithTimeout(b.report, lockReleaseWait)
	defer cancel()
	path := fmt.Sprintf("/builds/%d/steps/%d/locks/release", b.a.BuildID, number)
	req := jsonRequest(path, workerapi.AttemptRequest{AttemptToken: b.a.AttemptToken})
	rep, err := b.w.client.call(ctx, newBackoff(b.w.cfg.BackoffMin, b.w.cfg.BackoffMax), req)
	if err == nil && rep.status/100 != 2 {
		err = refused(rep, "release the locks of step %d", number)
	}
	if err != nil {
		b.log.Warn("could not release a step's locks; the master releases them when "+
			"the step's finish arrives", "step", number, "err", err)
	}
}
