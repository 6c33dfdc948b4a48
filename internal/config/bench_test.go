package config

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// bigConfig writes a configuration with the given numbers of builders,
// workers and schedulers, each builder with three steps; names get suffix
// so that two calls can differ by renames.
func bigConfig(builders, workers, schedulers int, suffix string) string {
	var b strings.Builder
	b.WriteString(`app = git_repo("app", "https://example.com/app.git")` + "\n")
	for i := range workers {
		fmt.Fprintf(&b, "worker(\"w%d%s\", \"pw%d\", tags = [\"pool%d\"])\n", i, suffix, i, i%10)
	}
	for i := range builders {
		fmt.Fprintf(&b, "builder(\"b%d%s\", [\"tag:pool%d\"], [step.git(app), step.shell(\"make\"), "+
			"step.shell(\"make test\", env = {\"N\": \"%d\"})])\n", i, suffix, i%10, i)
	}
	for i := range schedulers {
		fmt.Fprintf(&b, "scheduler.branch(\"s%d%s\", app, \"main\", [\"b%d%s\"])\n", i, suffix, i%builders, suffix)
	}
	return b.String()
}

// BenchmarkLoad evaluates a configuration of 1,000 builders, 200 workers
// and 300 schedulers.
func BenchmarkLoad(b *testing.B) {
	dir := writeFiles(b, map[string]string{"regent.star": bigConfig(1000, 200, 300, "")})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Load(context.Background(), dir, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
