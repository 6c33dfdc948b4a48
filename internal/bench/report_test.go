package bench

import (
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func sampleVersus() *Run {
	run := &Run{Target: "make bench-buildbot", Commit: "0123456789abcdef0123", Date: time.Date(2026, 12, 4, 17, 0, 0, 0, time.UTC),
		Machine: Machine{CPUs: 2, MemoryMiB: 24105, GoVersion: "go1.26", Buildbot: "3.7.0"}, Elapsed: 125,
		Load: []float64{1.5, 12.25}}
	fig := func(id, system, better string) Figure {
		return Figure{ID: id, Group: "Dispatch: 4 workers, 1 builder", Name: id, System: system,
			Unit: "u", Better: better}
	}
	run.Add(fig("throughput", SystemRegent, HigherIsBetter), []float64{100, 120, 110})
	run.Add(fig("latency", SystemRegent, LowerIsBetter), []float64{5, 6, 4})
	run.Add(fig("throughput", SystemBuildbot, HigherIsBetter), []float64{5, 4, 6})
	run.Add(fig("latency", SystemBuildbot, LowerIsBetter), []float64{100, 200, 150})
	run.Missing(fig("failover", SystemBuildbot, LowerIsBetter), "skipped in this run")
	run.Add(fig("failover", SystemRegent, LowerIsBetter), []float64{0.5})
	run.ComputeRatios()
	return run
}

func TestRatiosSayHowManyTimesBetterRegentIs(t *testing.T) {
	t.Parallel()
	run := sampleVersus()
	for id, want := range map[string]float64{"throughput": 110.0 / 5, "latency": 150.0 / 5} {
		got, ok := run.Ratio(id)
		if !ok || math.Abs(got-want) > 1e-9 {
			t.Errorf("ratio of %s = %v (%v), want %v", id, got, ok, want)
		}
	}
	if got, ok := run.Ratio("failover"); ok {
		t.Errorf("ratio of a figure Buildbot did not measure = %v", got)
	}
}

func TestRenderMarkdown(t *testing.T) {
	t.Parallel()
	regent := &Run{Target: "make bench", Commit: "abcdef", Dirty: true, Quick: true,
		Date: time.Date(2026, 12, 4, 17, 0, 0, 0, time.UTC), Machine: Machine{CPUs: 2, MemoryMiB: 512}}
	regent.Add(Figure{ID: "api.p50", Group: "REST API: list", Name: "GET builders", System: SystemRegent,
		Unit: "ms", Better: LowerIsBetter, Note: "answer of 1 byte"}, []float64{8, 9, 10})
	regent.Missing(Figure{ID: "failover", Group: "Failover", Name: "crash", System: SystemRegent}, "needs multi-master")
	md := string(RenderMarkdown(&Report{Regent: regent, Versus: sampleVersus()}))
	for _, want := range []string{
		"# Benchmarks",
		"`make bench` on commit `abcdef`, with uncommitted changes",
		"2 CPUs, 512 MiB memory",
		"**quick**",
		"| GET builders — answer of 1 byte | 9.00 ms | 8.00–10.0 (22%) | 3 |",
		"| crash | **not measured yet:** needs multi-master | | |",
		"`make bench-buildbot` on commit `0123456789ab`",
		"23.5 GiB memory",
		"Buildbot 3.7.0",
		"the harness took 2m5s; load average 1.5 at the start, 12.2 at the end.",
		"| throughput (u) | 110 (100–120, 18%, n=3) | 5.00 (4.00–6.00, 40%, n=3) | ×22.0 |",
		"| latency (u) | 5.00 (4.00–6.00, 40%, n=3) | 150 (100–200, 67%, n=3) | ×30.0 |",
		"| failover (u) | 0.5 (n=1) | not measured: skipped in this run |  |",
		"## At a glance",
		"| Dispatch: 4 workers, 1 builder: latency | 5.00 u | 150 u | ×30.0 |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("the report lacks %q:\n%s", want, md)
		}
	}
	if !strings.HasSuffix(md, "\n") || strings.HasSuffix(md, "\n\n") {
		t.Errorf("the report does not end with exactly one newline")
	}
}

func TestRenderMarkdownWithoutRuns(t *testing.T) {
	t.Parallel()
	md := string(RenderMarkdown(&Report{}))
	for _, want := range []string{"No `make bench` run recorded yet.", "No `make bench-buildbot` run recorded yet."} {
		if !strings.Contains(md, want) {
			t.Errorf("the report lacks %q:\n%s", want, md)
		}
	}
}

func TestReportRoundTripKeepsTheOtherRun(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "benchmarks.json")
	empty, err := LoadReport(path)
	if err != nil || empty.Regent != nil || empty.Versus != nil {
		t.Fatalf("LoadReport of a missing file = %+v, %v; want an empty report", empty, err)
	}
	if err := (&Report{Versus: sampleVersus()}).Save(path); err != nil {
		t.Fatal(err)
	}
	r, err := LoadReport(path)
	if err != nil {
		t.Fatal(err)
	}
	r.Regent = &Run{Target: "make bench"}
	if err := r.Save(path); err != nil {
		t.Fatal(err)
	}
	back, err := LoadReport(path)
	if err != nil {
		t.Fatal(err)
	}
	if back.Regent == nil || back.Versus == nil || len(back.Versus.Figures) != 6 || len(back.Versus.Ratios) != 2 {
		t.Errorf("after saving both runs: regent %v, versus %+v", back.Regent, back.Versus)
	}
	f, ok := back.Versus.Figure(SystemBuildbot, "latency")
	if !ok || f.Summary == nil || f.Summary.Median != 150 || len(f.Runs) != 3 {
		t.Errorf("Buildbot's latency after a round trip: %+v", f)
	}
}

func TestFormatValue(t *testing.T) {
	t.Parallel()
	for v, want := range map[float64]string{
		0: "0", 0.0123: "0.0123", 1.5: "1.50", 12.34: "12.3", 123.4: "123", 1234567: "1,234,567", -2500: "-2,500",
	} {
		if got := FormatValue(v); got != want {
			t.Errorf("FormatValue(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestWrapKeepsListItemsIndented(t *testing.T) {
	t.Parallel()
	if got, want := wrap("- one two three four", 9), "- one two\n  three\n  four"; got != want {
		t.Errorf("wrap = %q, want %q", got, want)
	}
}

func TestGroupsShowMemoryAndGoBenchmarksLast(t *testing.T) {
	t.Parallel()
	var figs []Figure
	for _, g := range []string{"Go benchmarks (bench.txt)", "Dispatch: a", "Master memory", "Dispatch: b", "Apply"} {
		figs = append(figs, Figure{Group: g})
	}
	got := strings.Join(groups(figs), "; ")
	if want := "Dispatch: a; Dispatch: b; Apply; Master memory; Go benchmarks (bench.txt)"; got != want {
		t.Errorf("groups in the order %s, want %s", got, want)
	}
}
