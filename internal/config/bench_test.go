package config

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// bigConfig writes a configuration with the given numbers of builders,
// workers and schedulers, each builder with three steps. The first
// changed of each kind are renamed (builders declaring their previous
// name) and as many objects appear under new names.
func bigConfig(builders, workers, schedulers, changed int) string {
	var b strings.Builder
	name := func(prefix string, i int) string {
		if i < changed {
			return fmt.Sprintf("%s%d-new", prefix, i)
		}
		return fmt.Sprintf("%s%d", prefix, i)
	}
	b.WriteString(`app = git_repo("app", "https://example.com/app.git")` + "\n")
	for i := range workers + changed {
		fmt.Fprintf(&b, "worker(%q, \"pw%d\", tags = [\"pool%d\"])\n", name("w", i), i, i%10)
	}
	for i := range builders {
		previous := ""
		if i < changed {
			previous = fmt.Sprintf(", previous_names = [\"b%d\"]", i)
		}
		fmt.Fprintf(&b, "builder(%q, [\"tag:pool%d\"], [step.git(app), step.shell(\"make\"), "+
			"step.shell(\"make test\", env = {\"N\": \"%d\"})]%s)\n", name("b", i), i%10, i, previous)
	}
	for i := range schedulers {
		fmt.Fprintf(&b, "scheduler.branch(%q, app, \"main\", [%q])\n", name("s", i), name("b", i%builders))
	}
	return b.String()
}

// BenchmarkLoad evaluates a configuration of 1,000 builders, 200 workers
// and 300 schedulers, in an evaluator process and in this one.
func BenchmarkLoad(b *testing.B) {
	dir := writeFiles(b, map[string]string{"regent.star": bigConfig(1000, 200, 300, 0)})
	for _, inProcess := range []bool{false, true} {
		b.Run(fmt.Sprintf("in_process=%v", inProcess), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Load(context.Background(), dir, Options{InProcess: inProcess}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDiff compares two configurations of 1,000 builders, 200
// workers and 300 schedulers, where 10 of each are renamed, 10 workers
// added and 10 builders renamed with previous_names.
func BenchmarkDiff(b *testing.B) {
	old := loadBench(b, bigConfig(1000, 200, 300, 0))
	new := loadBench(b, bigConfig(1000, 200, 300, 10))
	b.ReportAllocs()
	for b.Loop() {
		Diff(old, new)
	}
}

// BenchmarkContentHash hashes a configuration of 1,000 builders, 200
// workers and 300 schedulers.
func BenchmarkContentHash(b *testing.B) {
	st := loadBench(b, bigConfig(1000, 200, 300, 0))
	b.ReportAllocs()
	for b.Loop() {
		ContentHash(st, func(w, p string) string { return w + p })
	}
}

// loadBench evaluates src in process for a benchmark.
func loadBench(b *testing.B, src string) *State {
	b.Helper()
	st, err := Load(context.Background(), writeFiles(b, map[string]string{"regent.star": src}),
		Options{InProcess: true})
	if err != nil {
		b.Fatal(err)
	}
	return st
}
