// Command regent-bench measures Regent, and Buildbot beside it, and
// writes docs/benchmarks.json and docs/benchmarks.md. `make bench` and
// `make bench-buildbot` run it; see internal/bench.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/regent-ci/regent/internal/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(bench.Main(ctx, os.Args[1:], os.Stderr))
}
