package bench

import (
	"context"
	"fmt"
	"time"
)

// dispatchCase is one shape of the dispatch workload: trivial builds
// forced through the REST API onto local workers.
type dispatchCase struct {
	// id prefixes the figures' ids, label names the case in their rows.
	id, label string
	// workers and builders are how many are configured; every builder
	// may use every worker.
	workers, builders int
	// spread is over how many builders each burst's requests go,
	// round-robin.
	spread int
	// burst is how many builds each burst forces at once; idle how many
	// are forced one at a time for the idle latency (none if 0).
	burst, idle int
	// runs is how many times the burst and the idle series are repeated.
	runs int
}

// Concurrent clients submitting a burst, and the pause between two
// builds of the idle series.
const (
	submitters = 8
	idleGap    = 100 * time.Millisecond
)

// measureDispatch runs a dispatch case on d, after a warm-up, and adds
// its figures for system to run.
func measureDispatch(ctx context.Context, d dispatcher, c dispatchCase, system string, run *Run, timeout time.Duration) error {
	builders := builderNames(c.builders)[:c.spread]
	if _, err := runBurst(ctx, d, builders, min(8, c.burst), submitters, timeout); err != nil {
		return fmt.Errorf("warm up: %w", err)
	}
	var tput, bp50, bp99, ip50, ip99 []float64
	for range c.runs {
		res, err := runBurst(ctx, d, builders, c.burst, submitters, timeout)
		if err != nil {
			return err
		}
		tput = append(tput, res.Throughput)
		ms := Millis(res.Latencies)
		bp50 = append(bp50, Percentile(ms, 50))
		bp99 = append(bp99, Percentile(ms, 99))
		if c.idle > 0 {
			lat, err := runIdle(ctx, d, builders[0], c.idle, idleGap, timeout)
			if err != nil {
				return err
			}
			ms := Millis(lat)
			ip50 = append(ip50, Percentile(ms, 50))
			ip99 = append(ip99, Percentile(ms, 99))
		}
	}
	fig := func(suffix, name, unit, better string) Figure {
		return Figure{ID: c.id + "." + suffix, Group: "Dispatch: " + c.label, Name: name,
			System: system, Unit: unit, Better: better}
	}
	burst := fmt.Sprintf("%d builds forced at once", c.burst)
	run.Add(fig("throughput", "throughput, "+burst, "builds/s", HigherIsBetter), tput)
	run.Add(fig("burst.p50", "force to step start, median, "+burst, "ms", LowerIsBetter), bp50)
	run.Add(fig("burst.p99", "force to step start, p99, "+burst, "ms", LowerIsBetter), bp99)
	if c.idle > 0 {
		idle := fmt.Sprintf("%d builds forced one at a time", c.idle)
		run.Add(fig("idle.p50", "force to step start, median, "+idle, "ms", LowerIsBetter), ip50)
		run.Add(fig("idle.p99", "force to step start, p99, "+idle, "ms", LowerIsBetter), ip99)
	}
	return nil
}

// regentDispatchSite starts a Regent master on SQLite configured for c,
// with its workers connected.
func regentDispatchSite(ctx context.Context, env *env, lab *Lab, c dispatchCase) (*regentSite, *regentMaster, error) {
	site, err := newRegentSite(env.regentBin, lab, lab.Path("regent.db"))
	if err != nil {
		return nil, nil, err
	}
	if err := site.writeConfig(uniformStar(c.workers, c.builders, "true", false)); err != nil {
		return nil, nil, err
	}
	if _, err := site.applyDB(ctx); err != nil {
		return nil, nil, err
	}
	m, err := site.startMaster(ctx, "m1")
	if err != nil {
		return nil, nil, err
	}
	if err := site.startWorkers(ctx, m, workerNames(c.workers)); err != nil {
		return nil, nil, err
	}
	return site, m, nil
}

// buildbotDispatchSite starts a Buildbot master on SQLite configured for
// c, with its workers connected.
func buildbotDispatchSite(ctx context.Context, env *env, lab *Lab, c dispatchCase) (*buildbotSite, *bbMaster, error) {
	site := &buildbotSite{lab: lab, scripts: env.buildbotScripts, dbURL: "sqlite:///state.sqlite"}
	m, err := site.newMaster(ctx, "master", "--builders", fmt.Sprint(c.builders), "--workers", fmt.Sprint(c.workers))
	if err != nil {
		return nil, nil, err
	}
	if err := m.start(ctx, 5*time.Minute); err != nil {
		return nil, nil, err
	}
	if err := site.startWorkers(ctx, m, c.workers); err != nil {
		return nil, nil, err
	}
	return site, m, nil
}
