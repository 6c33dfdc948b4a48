#!/usr/bin/env bash
# The steps of `make bench`, run once PostgreSQL is up (scripts/with-postgres.sh
# sets REGENT_TEST_POSTGRES_URL): the Go benchmarks into bench.txt, then the
# harness's Regent workloads, which write docs/benchmarks.json and
# docs/benchmarks.md with the Go benchmarks' figures among theirs.
#
#   QUICK=1      a short development pass: BenchmarkApply once, fewer runs
#   LOG_MB=N     the log ingestion build prints N MiB (default 1024, 32 if QUICK)
#   BENCHTIME=D  -benchtime of the Go benchmarks (default 1s)
#   GO=PATH      the go command
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

go=${GO:-go}
flags=()
if [[ -n "${QUICK:-}" && "${QUICK}" != 0 ]]; then
	pattern='^BenchmarkApply$'
	benchtime=1x
	flags+=(-quick)
else
	pattern=.
	benchtime=${BENCHTIME:-1s}
fi
if [[ -n "${LOG_MB:-}" ]]; then
	flags+=(-log-mb "$LOG_MB")
fi

start=$SECONDS
"$go" test -run='^$' -bench="$pattern" -benchtime="$benchtime" -timeout 60m ./... | tee bench.txt
echo "bench: Go benchmarks took $((SECONDS - start))s" >&2
status=0
"$go" run ./cmd/regent-bench regent -gobench bench.txt "${flags[@]}" || status=$?
echo "bench: took $((SECONDS - start))s in all; see docs/benchmarks.md" >&2
exit "$status"
