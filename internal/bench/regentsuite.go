package bench

import (
	"context"
	"fmt"
	"os"
	"time"
)

// regentParams are the sizes of `make bench`'s workloads.
type regentParams struct {
	dispatchRuns, burst, idle  int
	bigRuns, bigBurst, bigIdle int
	apiRuns, apiRequests       int
	applyFirst, applyChange    int
	logRuns                    int
	crashTrials, hangTrials    int
}

func regentSizes(quick bool) regentParams {
	if quick {
		return regentParams{dispatchRuns: 2, burst: 40, idle: 10, bigRuns: 1, bigBurst: 20, bigIdle: 5,
			apiRuns: 2, apiRequests: 50, applyFirst: 1, applyChange: 2, logRuns: 1, crashTrials: 2, hangTrials: 1}
	}
	return regentParams{dispatchRuns: 5, burst: 200, idle: 40, bigRuns: 3, bigBurst: 100, bigIdle: 20,
		apiRuns: 5, apiRequests: 200, applyFirst: 3, applyChange: 6, logRuns: 3, crashTrials: 5, hangTrials: 3}
}

// RunRegent measures Regent's own figures, `make bench`.
func RunRegent(ctx context.Context, opts Options) (*Run, error) {
	start := time.Now()
	run, err := newRun(ctx, opts, "make bench")
	if err != nil {
		return nil, err
	}
	var benches []*GoBenchmark
	if opts.GoBench != "" {
		f, err := os.Open(opts.GoBench)
		if err != nil {
			return nil, fmt.Errorf("read Go benchmarks: %w", err)
		}
		benches, err = ParseGoBench(f)
		f.Close()
		if err != nil {
			return nil, err
		}
	}
	e, err := newEnv(ctx, opts)
	if err != nil {
		return nil, err
	}
	defer e.close()
	p := regentSizes(opts.Quick)
	runWorkloads(ctx, e, run, []workload{
		{name: "dispatch", run: func(ctx context.Context, e *env, run *Run) error {
			for _, c := range []dispatchCase{
				{id: "dispatch.w4", label: "4 workers, 1 builder", workers: 4, builders: 1, spread: 1,
					burst: p.burst, idle: p.idle, runs: p.dispatchRuns},
				{id: "dispatch.w20", label: "20 workers, 1 builder", workers: 20, builders: 1, spread: 1,
					burst: p.burst, idle: p.idle, runs: p.dispatchRuns},
			} {
				if err := regentDispatch(ctx, e, c, run); err != nil {
					return fmt.Errorf("%s: %w", c.id, err)
				}
			}
			return nil
		}},
		{name: "builders1000", run: func(ctx context.Context, e *env, run *Run) error {
			c := dispatchCase{id: "dispatch.b1000", label: "1,000 builders, 4 workers", workers: 4, builders: 1000,
				spread: p.bigBurst, burst: p.bigBurst, idle: p.bigIdle, runs: p.bigRuns}
			return regentBigSite(ctx, e, c, run, p.apiRequests, p.apiRuns, 0)
		}},
		{name: "apply", run: func(ctx context.Context, e *env, run *Run) error {
			for _, db := range []string{"sqlite", "postgres"} {
				if err := measureLargeApply(ctx, e, db, p.applyFirst, p.applyChange, run); err != nil {
					return fmt.Errorf("%s: %w", db, err)
				}
			}
			return nil
		}},
		{name: "logs", run: func(ctx context.Context, e *env, run *Run) error {
			return measureLogs(ctx, e, opts.LogMiB, p.logRuns, run)
		}},
		{name: "failover", run: func(ctx context.Context, e *env, run *Run) error {
			return measureRegentFailover(ctx, e, p.crashTrials, p.hangTrials, run)
		}},
	})
	AddGoBenchmarks(run, benches)
	run.Elapsed = time.Since(start).Seconds()
	run.Load = append(run.Load, LoadAverage())
	return run, nil
}

// regentDispatch measures one dispatch case on a fresh Regent master.
func regentDispatch(ctx context.Context, e *env, c dispatchCase, run *Run) error {
	lab, err := e.lab(c.id)
	if err != nil {
		return err
	}
	defer lab.Close()
	_, m, err := regentDispatchSite(ctx, e, lab, c)
	if err != nil {
		return err
	}
	if err := measureDispatch(ctx, regentDispatcher{base: m.base()}, c, SystemRegent, run, 10*time.Minute); err != nil {
		return err
	}
	return addMasterMemory(run, SystemRegent, c, m.proc)
}

// regentBigSite measures, on one Regent master with 1,000 builders: the
// dispatch case c, GET /api/v1/builders, and, if reconfigRuns is not
// zero, reconfiguring 10 of the builders.
func regentBigSite(ctx context.Context, e *env, c dispatchCase, run *Run, apiRequests, apiRuns, reconfigRuns int) error {
	lab, err := e.lab(c.id)
	if err != nil {
		return err
	}
	defer lab.Close()
	site, m, err := regentDispatchSite(ctx, e, lab, c)
	if err != nil {
		return err
	}
	if err := measureDispatch(ctx, regentDispatcher{base: m.base()}, c, SystemRegent, run, 10*time.Minute); err != nil {
		return err
	}
	if err := addGetFigures(ctx, run, SystemRegent, "api.builders", "REST API: list of 1,000 builders",
		"the builders list", m.base(), "/api/v1/builders", apiRequests, apiRuns); err != nil {
		return err
	}
	if reconfigRuns > 0 {
		star := func(shift bool) string { return uniformStar(c.workers, c.builders, "true", shift) }
		_, visible, err := measureRegentReconfig(ctx, site, m, star, "b0000", reconfigRuns)
		if err != nil {
			return err
		}
		run.Add(reconfigFigure(SystemRegent), visible)
	}
	return addMasterMemory(run, SystemRegent, c, m.proc)
}

// addMasterMemory adds the peak memory of the master that ran case c.
func addMasterMemory(run *Run, system string, c dispatchCase, master *Proc) error {
	mem, err := master.Memory()
	if err != nil {
		return err
	}
	run.Add(Figure{ID: "memory." + c.id, Group: "Master memory", System: system,
		Name: "peak (VmHWM) after the workloads of " + c.label, Unit: "MiB", Better: LowerIsBetter},
		[]float64{float64(mem.PeakKiB) / 1024})
	return nil
}

// reconfigFigure describes the reconfiguration figure both systems
// measure.
func reconfigFigure(system string) Figure {
	return Figure{ID: "reconfig.b1000", Group: "Reconfiguration: 1,000 builders, 4 workers",
		Name: "rename 10 builders, remove 10, add 10, until the master runs it", System: system,
		Unit: "s", Better: LowerIsBetter}
}
