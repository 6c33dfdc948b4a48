package bench

import (
	"math"
	"strings"
	"testing"
)

const sampleBenchOutput = `goos: linux
goarch: amd64
pkg: github.com/regent-ci/regent/internal/cluster
cpu: Some CPU
BenchmarkFailover/crash-2         	       1	11880956136 ns/op	       567.8 max-ms	       353.5 p50-ms
PASS
ok  	github.com/regent-ci/regent/internal/cluster	84.173s
pkg: github.com/regent-ci/regent/internal/store
BenchmarkApply/sqlite/first-2         	       1	8090518734 ns/op
BenchmarkApply/sqlite/change-2        	       3	 334268725 ns/op	 1200 B/op	 30 allocs/op
BenchmarkApply/sqlite/change-2        	       3	 300000000 ns/op	 1200 B/op	 30 allocs/op
BenchmarkApply/sqlite/change-2 trial 3 took 2s
ok  	github.com/regent-ci/regent/internal/store	37.217s
`

func TestParseGoBench(t *testing.T) {
	t.Parallel()
	benches, err := ParseGoBench(strings.NewReader(sampleBenchOutput))
	if err != nil {
		t.Fatal(err)
	}
	if len(benches) != 3 {
		t.Fatalf("%d benchmarks, want 3: %+v", len(benches), benches)
	}
	fo := benches[0]
	if fo.Package != "github.com/regent-ci/regent/internal/cluster" || fo.Name != "BenchmarkFailover/crash" {
		t.Errorf("first benchmark %s %s", fo.Package, fo.Name)
	}
	if got := fo.Metrics["p50-ms"]; len(got) != 1 || got[0] != 353.5 {
		t.Errorf("p50-ms = %v", got)
	}
	if got := benches[2].Metrics["ns/op"]; len(got) != 2 || got[1] != 3e8 {
		t.Errorf("change ns/op = %v, want two values", got)
	}
}

func TestAddGoBenchmarks(t *testing.T) {
	t.Parallel()
	benches, err := ParseGoBench(strings.NewReader(sampleBenchOutput))
	if err != nil {
		t.Fatal(err)
	}
	var run Run
	AddGoBenchmarks(&run, benches)
	f, ok := run.Figure(SystemRegent, "apply.store.change.sqlite")
	if !ok || f.Unit != "s" || f.Summary.N != 2 || math.Abs(f.Summary.Median-(0.334268725+0.3)/2) > 1e-9 {
		t.Errorf("apply change figure: %+v (found %v)", f, ok)
	}
	if _, ok := run.Figure(SystemRegent, "go.store.BenchmarkApply/sqlite/change.B/op"); ok {
		t.Error("B/op became a figure")
	}
	crash, ok := run.Figure(SystemRegent, "go.cluster.BenchmarkFailover/crash.ns/op")
	if !ok || crash.Unit != "ms/op" || math.Abs(crash.Summary.Median-11880.956136) > 1e-6 {
		t.Errorf("failover figure: %+v (found %v)", crash, ok)
	}
}
