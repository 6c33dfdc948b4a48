package bench

import (
	"context"
	"fmt"
	"time"
)

// versusParams are the sizes of `make bench-buildbot`'s workloads,
// smaller than `make bench`'s since Buildbot is much slower.
type versusParams struct {
	runs, burst, idle          int
	bigRuns, bigBurst, bigIdle int
	apiRuns, apiRequests       int
	reconfigRuns               int
	crashTrials                int
}

func versusSizes(quick bool) versusParams {
	if quick {
		return versusParams{runs: 1, burst: 20, idle: 5, bigRuns: 1, bigBurst: 10, bigIdle: 3,
			apiRuns: 1, apiRequests: 20, reconfigRuns: 2, crashTrials: 1}
	}
	// Buildbot starts about 0.2 builds a second with 1,000 builders: a
	// burst of 20 takes about 100 s, an idle build about 10 s.
	return versusParams{runs: 3, burst: 100, idle: 20, bigRuns: 3, bigBurst: 20, bigIdle: 5,
		apiRuns: 3, apiRequests: 50, reconfigRuns: 4, crashTrials: 3}
}

// Buildbot's poller failover takes about 15 minutes; this bounds it.
const buildbotFailoverTimeout = 40 * time.Minute

// RunVersus measures the workloads both systems can express, Regent's
// and then Buildbot's, `make bench-buildbot`.
func RunVersus(ctx context.Context, opts Options) (*Run, error) {
	start := time.Now()
	run, err := newRun(ctx, opts, "make bench-buildbot")
	if err != nil {
		return nil, err
	}
	version, err := runCommand(ctx, opts.Root, nil, systemPython, "-c", "import buildbot; print(buildbot.version)")
	if err != nil {
		return nil, fmt.Errorf("find Buildbot (install it with scripts/bench-buildbot.sh): %w", err)
	}
	run.Machine.Buildbot = firstLine(version)
	e, err := newEnv(ctx, opts)
	if err != nil {
		return nil, err
	}
	defer e.close()
	p := versusSizes(opts.Quick)
	small := dispatchCase{id: "dispatch.w4", label: "4 workers, 1 builder", workers: 4, builders: 1, spread: 1,
		burst: p.burst, idle: p.idle, runs: p.runs}
	big := dispatchCase{id: "dispatch.b1000", label: "1,000 builders, 4 workers", workers: 4, builders: 1000,
		spread: p.bigBurst, burst: p.bigBurst, idle: p.bigIdle, runs: p.bigRuns}
	runWorkloads(ctx, e, run, []workload{
		{name: "dispatch", run: func(ctx context.Context, e *env, run *Run) error {
			if err := regentDispatch(ctx, e, small, run); err != nil {
				return fmt.Errorf("regent: %w", err)
			}
			if err := buildbotDispatch(ctx, e, small, run, 0, 0, 0); err != nil {
				return fmt.Errorf("buildbot: %w", err)
			}
			return nil
		}},
		{name: "builders1000", run: func(ctx context.Context, e *env, run *Run) error {
			if err := regentBigSite(ctx, e, big, run, p.apiRequests, p.apiRuns, p.reconfigRuns); err != nil {
				return fmt.Errorf("regent: %w", err)
			}
			if err := buildbotDispatch(ctx, e, big, run, p.apiRequests, p.apiRuns, p.reconfigRuns); err != nil {
				return fmt.Errorf("buildbot: %w", err)
			}
			return nil
		}},
		{name: "failover", run: func(ctx context.Context, e *env, run *Run) error {
			if err := measureRegentFailover(ctx, e, p.crashTrials, 0, run); err != nil {
				return fmt.Errorf("regent: %w", err)
			}
			if opts.SkipSlow {
				for _, f := range []Figure{
					{ID: "failover.crash.moved", Name: "SIGKILL: another master owns the poller"},
					{ID: "failover.crash.recorded", Name: "SIGKILL: a commit pushed at the fault is recorded"},
				} {
					f.Group, f.System, f.Unit, f.Better = failoverGroup, SystemBuildbot, "s", LowerIsBetter
					run.Missing(f, "skipped in this run (SKIP_SLOW=1); it takes about 15 minutes")
				}
				return nil
			}
			if err := measureBuildbotFailover(ctx, e, buildbotFailoverTimeout, run); err != nil {
				return fmt.Errorf("buildbot: %w", err)
			}
			return nil
		}},
	})
	run.ComputeRatios()
	run.Elapsed = time.Since(start).Seconds()
	run.Load = append(run.Load, LoadAverage())
	return run, nil
}

// buildbotDispatch measures a dispatch case on a fresh Buildbot master,
// then, if apiRuns is not zero, GET /api/v2/builders, and, if
// reconfigRuns is not zero, reconfiguring 10 of the builders.
func buildbotDispatch(ctx context.Context, e *env, c dispatchCase, run *Run, apiRequests, apiRuns, reconfigRuns int) error {
	lab, err := e.lab("bb-" + c.id)
	if err != nil {
		return err
	}
	defer lab.Close()
	_, m, err := buildbotDispatchSite(ctx, e, lab, c)
	if err != nil {
		return err
	}
	if err := measureDispatch(ctx, newBBDispatcher(m), c, SystemBuildbot, run, 30*time.Minute); err != nil {
		return err
	}
	if apiRuns > 0 {
		if err := addGetFigures(ctx, run, SystemBuildbot, "api.builders", "REST API: list of 1,000 builders",
			"the builders list", m.base(), "/api/v2/builders", apiRequests, apiRuns); err != nil {
			return err
		}
	}
	var took []float64
	for i := range reconfigRuns {
		var more []string
		if i%2 == 0 {
			more = []string{"--shift"}
		}
		if err := m.writeConfig(ctx, more...); err != nil {
			return err
		}
		d, err := m.reconfigure(ctx, 10*time.Minute)
		if err != nil {
			return err
		}
		took = append(took, d.Seconds())
	}
	if reconfigRuns > 0 {
		run.Add(reconfigFigure(SystemBuildbot), took)
	}
	return addMasterMemory(run, SystemBuildbot, c, m.proc)
}
