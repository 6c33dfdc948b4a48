package worker

import (
	"context"
	"math/rand/v2"
	"time"
)

// backoff yields jittered, exponentially growing delays between min and max.
// It is owned by one goroutine; each retry loop has its own.
type backoff struct {
	min, max time.Duration
	cur      time.Duration
}

func newBackoff(min, max time.Duration) *backoff {
	return &backoff{min: min, max: max}
}

// next returns the delay before the next attempt and doubles the base for
// the one after. The delay is drawn from [base/2, base] so that workers
// cut off together do not come back in lockstep.
func (b *backoff) next() time.Duration {
	if b.cur < b.min {
		b.cur = b.min
	}
	base := b.cur
	b.cur = min(b.cur*2, b.max)
	half := base / 2
	return half + rand.N(base-half+1)
}

// reset makes the next delay start from min again, after a success.
func (b *backoff) reset() { b.cur = 0 }

// wait sleeps for the next delay or until ctx ends, whichever is first.
func (b *backoff) wait(ctx context.Context) error {
	return sleep(ctx, b.next())
}

// sleep waits for d or until ctx ends and returns ctx's error in that case.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
