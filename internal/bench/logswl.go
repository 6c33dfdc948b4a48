package bench

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// logKind is one kind of output the log ingestion workload prints.
type logKind struct {
	id, label string
	// command prints exactly n bytes, given n.
	command func(n int64) string
}

// logKinds are the two extremes of how well a log compresses, since
// Regent stores log chunks compressed.
var logKinds = []logKind{
	{"text", "repetitive text (compresses well)", func(n int64) string {
		return fmt.Sprintf("yes 'regent benchmark: compiling internal/store ... ok' | head -c %d", n)
	}},
	{"random", "base64 of random bytes (barely compresses)", func(n int64) string {
		return fmt.Sprintf("base64 -w 100 /dev/urandom | head -c %d", n)
	}},
}

// maxStepLog is Regent's limit on the log of one step (the master's
// default, which no flag changes): a step printing more is truncated.
const maxStepLog = 512 << 20

// logStar declares one worker and one builder whose steps print n bytes
// of kind in all, in as few steps as Regent's per-step limit allows.
func logStar(kind logKind, n int64) string {
	var steps []string
	for i := 1; n > 0; i++ {
		part := min(n, maxStepLog)
		steps = append(steps, fmt.Sprintf("step.shell(command = %q, name = \"print%d\")", kind.command(part), i))
		n -= part
	}
	return fmt.Sprintf("w = worker(name = \"w1\", password = %q)\n"+
		"builder(name = \"b0000\", workers = [w], steps = [\n    %s,\n])\n",
		workerPassword, strings.Join(steps, ",\n    "))
}

// measureLogs runs, runs times per kind of log, one build whose step
// prints mib MiB on a fresh master on SQLite, and adds the ingestion
// rate (step start to step finish) and the master's and the worker's
// peak memory. Above Regent's per-step limit, the log is printed by
// several steps one after the other.
func measureLogs(ctx context.Context, env *env, mib int64, runs int, run *Run) error {
	for _, kind := range logKinds {
		var rate, masterPeak, workerPeak []float64
		for i := range runs {
			r, mp, wp, err := logRun(ctx, env, kind, mib<<20, i)
			if err != nil {
				return fmt.Errorf("%s log, run %d: %w", kind.id, i, err)
			}
			rate, masterPeak, workerPeak = append(rate, r), append(masterPeak, mp), append(workerPeak, wp)
		}
		group := fmt.Sprintf("Log ingestion: one step printing %d MiB", mib)
		if steps := (mib<<20 + maxStepLog - 1) / maxStepLog; steps > 1 {
			group = fmt.Sprintf("Log ingestion: %d MiB printed by %d steps in a row "+
				"(Regent keeps at most %d MiB per step)", mib, steps, maxStepLog>>20)
		}
		id := fmt.Sprintf("logs.%s.", kind.id)
		run.Add(Figure{ID: id + "rate", Group: group, System: SystemRegent, Name: "rate, " + kind.label,
			Unit: "MiB/s", Better: HigherIsBetter}, rate)
		run.Add(Figure{ID: id + "master_peak", Group: group, System: SystemRegent,
			Name: "master peak memory (VmHWM), " + kind.label, Unit: "MiB", Better: LowerIsBetter}, masterPeak)
		run.Add(Figure{ID: id + "worker_peak", Group: group, System: SystemRegent,
			Name: "worker peak memory (VmHWM), " + kind.label, Unit: "MiB", Better: LowerIsBetter}, workerPeak)
	}
	return nil
}

// logRun runs one build printing n bytes and returns the ingestion rate
// in MiB/s and the master's and worker's peak memory in MiB.
func logRun(ctx context.Context, env *env, kind logKind, n int64, i int) (rate, masterPeak, workerPeak float64, err error) {
	lab, err := env.lab(fmt.Sprintf("logs-%s-%d", kind.id, i))
	if err != nil {
		return 0, 0, 0, err
	}
	defer lab.Close()
	site, err := newRegentSite(env.regentBin, lab, lab.Path("regent.db"))
	if err != nil {
		return 0, 0, 0, err
	}
	if err := site.writeConfig(logStar(kind, n)); err != nil {
		return 0, 0, 0, err
	}
	if _, err := site.applyDB(ctx); err != nil {
		return 0, 0, 0, err
	}
	m, err := site.startMaster(ctx, "m1")
	if err != nil {
		return 0, 0, 0, err
	}
	if err := site.startWorkers(ctx, m, []string{"w1"}); err != nil {
		return 0, 0, 0, err
	}

	d := regentDispatcher{base: m.base()}
	id, err := d.force(ctx, "b0000")
	if err != nil {
		return 0, 0, 0, err
	}
	if _, err := waitOutcomes(ctx, d, []int64{id}, 200*time.Millisecond, 20*time.Minute); err != nil {
		return 0, 0, 0, err
	}
	var r regentRequest
	if err := getJSON(ctx, fmt.Sprintf("%s/api/v1/requests/%d", m.base(), id), &r); err != nil {
		return 0, 0, 0, err
	}
	var steps struct{ Items []regentStep }
	if err := getJSON(ctx, fmt.Sprintf("%s/api/v1/builds/%d/steps", m.base(), *r.Build), &steps); err != nil {
		return 0, 0, 0, err
	}
	var stored int64
	for _, st := range steps.Items {
		if st.StartedAt == nil || st.FinishedAt == nil {
			return 0, 0, 0, fmt.Errorf("step %d has not run", st.Number)
		}
		stored += st.LogSize
	}
	if stored != n {
		return 0, 0, 0, fmt.Errorf("the steps stored %d log bytes of %d", stored, n)
	}
	first, last := steps.Items[0], steps.Items[len(steps.Items)-1]
	mem, err := m.proc.Memory()
	if err != nil {
		return 0, 0, 0, err
	}
	wmem, err := workerMemory(site)
	if err != nil {
		return 0, 0, 0, err
	}
	secs := last.FinishedAt.Sub(*first.StartedAt).Seconds()
	return float64(n) / (1 << 20) / secs, float64(mem.PeakKiB) / 1024, float64(wmem.PeakKiB) / 1024, nil
}

// workerMemory returns the memory of the site's only worker process.
func workerMemory(site *regentSite) (Memory, error) {
	site.lab.mu.Lock()
	defer site.lab.mu.Unlock()
	for _, p := range site.lab.procs {
		if p.Name == "worker-w1" {
			return p.Memory()
		}
	}
	return Memory{}, fmt.Errorf("no worker process")
}
