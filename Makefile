# Regent's build and test entry points. CI runs `make test` (see .ci/run).
#
#   make build   the regent binary, in bin/
#   make test    go vet, every test, the race detector on a few packages and
#                a short fuzz run, all on one throwaway PostgreSQL server
#   make bench   every Go benchmark (output in bench.txt) and the harness's
#                figures, on a throwaway PostgreSQL; writes docs/benchmarks.md
#                and docs/benchmarks.json. QUICK=1 for a short pass, LOG_MB=N
#   make bench-buildbot  the same workloads on Regent and on Buildbot 3.7
#                (installed by the script), with their ratios; SKIP_SLOW=1
#                leaves out Buildbot's 15-minute poller failover
#   make lint    gofmt and go vet

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

GO ?= go
# Packages also tested under the race detector. It slows tests several
# times over, so it runs where concurrency is dense and tests are quick;
# tests of real master processes are left out. Directories not yet made
# are skipped.
RACE_DIRS ?= internal/testutil internal/store internal/dispatch internal/worker internal/workerapi \
	internal/schedule internal/master internal/changes internal/quietlog
RACE_PKGS ?= $(patsubst %,./%/...,$(wildcard $(RACE_DIRS)))
TEST_TIMEOUT ?= 18m
# The fuzz budget is a count of inputs, not a duration: with a duration,
# Go 1.26's fuzzing coordinator can report "context deadline exceeded" as a
# failure when its clock runs out while a worker is still inside an input on
# a loaded machine (fixed in Go 1.27). A count has no such clock; 60,000
# inputs take about 6 s on two cores.
FUZZTIME ?= 60000x
BENCHTIME ?= 1s

.PHONY: all build test test-steps bench bench-steps bench-buildbot lint

all: build

build:
	$(GO) build -o bin/regent ./cmd/regent

test:
	scripts/with-postgres.sh $(MAKE) --no-print-directory test-steps

# The steps of `make test`, once PostgreSQL is up. Each must pass.
test-steps:
	$(GO) vet ./...
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...
	$(GO) test -count=1 -race -timeout $(TEST_TIMEOUT) $(RACE_PKGS)
	@if grep -qs '^func FuzzLoad(' internal/config/*_test.go; then \
		set -x; $(GO) test -run='^$$' -fuzz='^FuzzLoad$$' -fuzztime=$(FUZZTIME) ./internal/config; \
	else \
		echo "fuzz: internal/config has no FuzzLoad yet, skipped"; \
	fi
	REGENT_CHAOS_BOUNDED=1 $(GO) test -count=1 -timeout 15m -run '^TestCampaignBounded$$' ./internal/chaos

# make chaos: a fault-injection campaign of DURATION (default 2m) against
# three masters, the workers and a PostgreSQL of its own, from SEED (random
# and printed if unset); it prints a pass, or the seed with a trace of
# each violated invariant, and keeps the history and logs for replay.
SEED ?=
DURATION ?= 2m
CHAOS_TIMEOUT ?= 3h
.PHONY: chaos
chaos:
	REGENT_CHAOS_SEED='$(SEED)' REGENT_CHAOS_DURATION='$(DURATION)' \
		$(GO) test -count=1 -v -timeout $(CHAOS_TIMEOUT) -run '^TestCampaign$$' ./internal/chaos

bench:
	scripts/with-postgres.sh $(MAKE) --no-print-directory bench-steps

# The steps of `make bench`, once PostgreSQL is up: see scripts/bench-regent.sh.
bench-steps:
	GO="$(GO)" BENCHTIME="$(BENCHTIME)" scripts/bench-regent.sh

bench-buildbot:
	GO="$(GO)" scripts/bench-buildbot.sh

lint:
	@unformatted=$$(gofmt -l .); \
	if [[ -n "$$unformatted" ]]; then \
		echo "gofmt would change:"; echo "$$unformatted"; exit 1; \
	fi
	$(GO) vet ./...
