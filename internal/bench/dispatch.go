package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// errNotYet means a build waited for has not finished yet.
var errNotYet = errors.New("not finished yet")

// dispatcher is a CI system as the dispatch workload drives it: it
// forces builds and tells when each one's step started and its build
// finished.
type dispatcher interface {
	// force submits one build request for builder and returns its id.
	force(ctx context.Context, builder string) (int64, error)
	// outcomes returns the outcome of every request of ids once all of
	// them have finished, and false while some have not.
	outcomes(ctx context.Context, ids []int64) (map[int64]outcome, bool, error)
}

// outcome is when a build request's first step started and its build
// finished, both on the system's clock, which is this machine's.
type outcome struct {
	stepStarted time.Time
	finished    time.Time
}

// burstResult is what one burst of builds gave.
type burstResult struct {
	// Throughput is builds finished per second, from the first request
	// sent to the last build finished.
	Throughput float64
	// Latencies are, per request, the time from sending the force request
	// to its first step starting.
	Latencies []time.Duration
}

// runBurst submits n build requests from conc concurrent clients, spread
// round-robin over builders, and waits for all of them to finish.
func runBurst(ctx context.Context, d dispatcher, builders []string, n, conc int, timeout time.Duration) (burstResult, error) {
	ids := make([]int64, n)
	sent := make([]time.Time, n)
	next := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				sent[i] = time.Now()
				id, err := d.force(ctx, builders[i%len(builders)])
				ids[i] = id
				if err != nil {
					mu.Lock()
					firstErr = cmpErr(firstErr, err)
					mu.Unlock()
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		return burstResult{}, fmt.Errorf("submit %d builds: %w", n, firstErr)
	}

	outs, err := waitOutcomes(ctx, d, ids, 100*time.Millisecond, timeout)
	if err != nil {
		return burstResult{}, err
	}
	var res burstResult
	last := sent[0]
	for i, id := range ids {
		o := outs[id]
		res.Latencies = append(res.Latencies, o.stepStarted.Sub(sent[i]))
		if o.finished.After(last) {
			last = o.finished
		}
	}
	first := slices.MinFunc(sent, func(a, b time.Time) int { return a.Compare(b) })
	res.Throughput = float64(n) / last.Sub(first).Seconds()
	return res, nil
}

// runIdle forces n builds of builder one at a time, each once the one
// before has finished and gap has passed, and returns each one's time
// from sending the force request to its first step starting.
func runIdle(ctx context.Context, d dispatcher, builder string, n int, gap, timeout time.Duration) ([]time.Duration, error) {
	var lat []time.Duration
	for range n {
		sent := time.Now()
		id, err := d.force(ctx, builder)
		if err != nil {
			return nil, err
		}
		outs, err := waitOutcomes(ctx, d, []int64{id}, 10*time.Millisecond, timeout)
		if err != nil {
			return nil, err
		}
		lat = append(lat, outs[id].stepStarted.Sub(sent))
		if err := sleep(ctx, gap); err != nil {
			return nil, err
		}
	}
	return lat, nil
}

// waitOutcomes asks for the outcomes of ids every interval until all are
// known.
func waitOutcomes(ctx context.Context, d dispatcher, ids []int64, interval, timeout time.Duration) (map[int64]outcome, error) {
	deadline := time.Now().Add(timeout)
	for {
		outs, done, err := d.outcomes(ctx, ids)
		if err != nil {
			return nil, err
		}
		if done {
			return outs, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%d builds not all finished after %v", len(ids), timeout)
		}
		if err := sleep(ctx, interval); err != nil {
			return nil, err
		}
	}
}

// fetchAll calls f for every id from at most workers goroutines and
// gathers the results; the first error ends it.
func fetchAll[T any](ctx context.Context, ids []int64, workers int, f func(context.Context, int64) (T, error)) (map[int64]T, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	out := make(map[int64]T, len(ids))
	var mu sync.Mutex
	var firstErr error
	next := make(chan int64)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range next {
				v, err := f(ctx, id)
				mu.Lock()
				if err != nil {
					if firstErr == nil {
						firstErr = err
						cancel()
					}
				} else {
					out[id] = v
				}
				mu.Unlock()
			}
		}()
	}
	for _, id := range ids {
		select {
		case next <- id:
		case <-ctx.Done():
		}
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// cmpErr keeps the first error.
func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
