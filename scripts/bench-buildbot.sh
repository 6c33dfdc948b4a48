#!/usr/bin/env bash
# `make bench-buildbot`: installs Buildbot 3.7 from Debian's packages if it is
# missing, then measures the workloads that Regent and Buildbot can both
# express, one system after the other, on one throwaway PostgreSQL server, and
# writes both systems' figures and their ratios into docs/benchmarks.json and
# docs/benchmarks.md (keeping `make bench`'s part of them).
#
#   QUICK=1      a short development pass: fewer runs and builds
#   SKIP_SLOW=1  leave out Buildbot's poller failover, which takes ~15 minutes
#   GO=PATH      the go command
#
# Everything listens on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# install_buildbot installs the packages unless they are there. Debian does not
# package Buildbot's web UI; scripts/buildbot/pylib holds a placeholder for it.
# psycopg2 lets Buildbot use PostgreSQL, for the failover workload.
install_buildbot() {
	if [[ -x /usr/bin/buildbot && -x /usr/bin/buildbot-worker ]] &&
		/usr/bin/python3 -c 'import buildbot, psycopg2' 2>/dev/null; then
		return
	fi
	local sudo=()
	if [[ $(id -u) -ne 0 ]]; then
		sudo=(sudo)
	fi
	local packages=(buildbot buildbot-worker python3-psycopg2)
	echo "bench-buildbot: installing ${packages[*]}" >&2
	if ! DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y "${packages[@]}"; then
		DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get update
		DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y "${packages[@]}"
	fi
}

install_buildbot
version=$(/usr/bin/python3 -c 'import buildbot; print(buildbot.version)')
if [[ $version != 3.7.* ]]; then
	echo "bench-buildbot: Buildbot $version is installed; the comparison is with 3.7" >&2
fi

go=${GO:-go}
flags=()
if [[ -n "${QUICK:-}" && "${QUICK}" != 0 ]]; then
	flags+=(-quick)
fi
if [[ -n "${SKIP_SLOW:-}" && "${SKIP_SLOW}" != 0 ]]; then
	flags+=(-skip-slow)
fi

start=$SECONDS
status=0
scripts/with-postgres.sh "$go" run ./cmd/regent-bench versus "${flags[@]}" || status=$?
echo "bench-buildbot: took $((SECONDS - start))s; see docs/benchmarks.md" >&2
exit "$status"
