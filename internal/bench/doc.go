// Package bench is Regent's benchmark harness: it starts real regent
// masters and workers (and, for comparison, Buildbot 3.7's), drives
// workloads through their APIs, and writes what it measured to
// docs/benchmarks.json and docs/benchmarks.md. cmd/regent-bench is its
// command line; `make bench` and `make bench-buildbot` run it.
//
// # Runs, figures and repetitions
//
// A [Run] is one invocation: `make bench` measures Regent alone (the
// Report's Regent run), `make bench-buildbot` the workloads both systems
// can express, one system after the other (its Versus run). Each run
// replaces its own part of the report and keeps the other's.
//
// A [Figure] is one measured quantity of one system, with one value per
// repeated run of its workload; the report shows the median over the
// runs, their range and the spread (max − min) / median. Where a run
// itself times many builds or requests, the run's value is a percentile
// over them (p50 or p99), and that value is what is repeated. The machine
// is shared, so nothing here asserts a timing: the unit tests check the
// statistics, the rendering and the configurations, not speeds.
//
// # Workloads
//
//   - dispatch: trivial builds forced through the REST API on local
//     workers; throughput, and the time from the force request to the
//     step's start, in bursts and one at a time (dispatchwl.go).
//   - builders1000: the same with 1,000 builders, then the builders list
//     of the REST API and, in the comparison, a reconfiguration renaming,
//     removing and adding ten builders (regentsuite.go, versus.go).
//   - apply: `regent config apply` of 1,000 builders, 200 workers and 300
//     schedulers, and of a change of ten of each (applywl.go).
//   - logs: one build printing a large log; ingestion rate and the
//     master's and worker's peak memory (logswl.go).
//   - failover: three masters on PostgreSQL; the owner of a git poller is
//     killed or paused, until another master owns the poller and records
//     a commit pushed at the fault (failoverwl.go, bbfailover.go).
//
// # Processes
//
// Every process is started in a [Lab], a directory of its own, as the
// leader of a new process group, with the kernel told to kill it if the
// harness dies; closing the lab kills what is left of each group it
// started, and nothing else. Everything listens on 127.0.0.1. Buildbot
// runs from Debian's packages on /usr/bin/python3 with the helpers of
// scripts/buildbot: mastercfg.py writes its master.cfg, and pylib holds a
// placeholder for its web UI plugin and an event log that timestamps
// builds and steps more finely than its REST API does.
package bench
