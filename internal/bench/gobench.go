package bench

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// GoBenchmark is one benchmark's results in `go test -bench` output:
// per metric (such as "ns/op" or "p50-ms"), one value per line, that is
// per -count.
type GoBenchmark struct {
	// Package is the import path from the "pkg:" line before it.
	Package string
	// Name is the benchmark's name without the -GOMAXPROCS suffix.
	Name    string
	Metrics map[string][]float64
	// order keeps the metrics in the order first printed.
	order []string
}

var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(-\d+)?\s+(\d+)\s+(.*)$`)

// ParseGoBench reads `go test -bench` output and returns its benchmarks
// in the order they first appear.
func ParseGoBench(r io.Reader) ([]*GoBenchmark, error) {
	var out []*GoBenchmark
	byName := map[string]*GoBenchmark{}
	pkg := ""
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimSpace(p)
			continue
		}
		m := benchLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		fields := strings.Fields(m[4])
		if len(fields)%2 != 0 {
			continue // a benchmark's own log line that looks like a result
		}
		key := pkg + " " + m[1]
		b := byName[key]
		if b == nil {
			b = &GoBenchmark{Package: pkg, Name: m[1], Metrics: map[string][]float64{}}
			byName[key] = b
			out = append(out, b)
		}
		for i := 0; i < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				return nil, fmt.Errorf("benchmark %s: value %q of %s: %w", m[1], fields[i], fields[i+1], err)
			}
			unit := fields[i+1]
			if _, ok := b.Metrics[unit]; !ok {
				b.order = append(b.order, unit)
			}
			b.Metrics[unit] = append(b.Metrics[unit], v)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read benchmark output: %w", err)
	}
	return out, nil
}

// AddGoBenchmarks adds the time per operation and the custom metrics
// (not B/op or allocs/op) of every benchmark as figures of the group "Go
// benchmarks". BenchmarkApply's results also go under the large apply's
// group, with names that say what they are.
func AddGoBenchmarks(run *Run, benches []*GoBenchmark) {
	for _, b := range benches {
		short := b.Package[strings.LastIndexByte(b.Package, '/')+1:]
		for _, unit := range b.order {
			if unit == "B/op" || unit == "allocs/op" {
				continue
			}
			vals := b.Metrics[unit]
			f := Figure{ID: "go." + short + "." + b.Name + "." + unit, Group: "Go benchmarks (make bench, bench.txt)",
				Name: short + "." + b.Name + " " + unit, System: SystemRegent, Unit: unit, Better: LowerIsBetter}
			switch {
			case unit == "ns/op":
				f.Unit = "ms/op"
				f.Name = short + "." + b.Name
				vals = scale(vals, 1e-6)
			case strings.HasSuffix(unit, "-ms"):
				f.Unit = "ms"
				f.Name = short + "." + b.Name + ", " + strings.TrimSuffix(unit, "-ms")
			}
			if sub, ok := strings.CutPrefix(b.Name, "BenchmarkApply/"); ok && unit == "ns/op" {
				db, phase, _ := strings.Cut(sub, "/")
				f.Group = "Apply: 1,000 builders, 200 workers, 300 schedulers"
				f.ID = "apply.store." + phase + "." + db
				f.Name = map[string]string{"first": "first apply into an empty database",
					"change": "change of 10 of each kind"}[phase] + " (" + db + "), store.Apply (BenchmarkApply)"
				f.Unit = "s"
				vals = scale(vals, 1e-3)
			}
			run.Add(f, vals)
		}
	}
}

func scale(xs []float64, k float64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = x * k
	}
	return out
}
