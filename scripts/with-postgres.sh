#!/usr/bin/env bash
# Runs a command with one throwaway PostgreSQL server that every test
# package shares, its admin URL in REGENT_TEST_POSTGRES_URL, and stops the
# server afterwards whatever the command's outcome. The command's exit
# status is the script's.
#
#   scripts/with-postgres.sh make test-steps
#
# If REGENT_TEST_POSTGRES_URL is already set, that server is used as it is.
# If no server can be started, the command still runs (the tests then start
# their own or skip), except with CI=true, where that is a failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ $# -eq 0 ]]; then
	echo "usage: scripts/with-postgres.sh COMMAND [ARG...]" >&2
	exit 2
fi
if [[ -n "${REGENT_TEST_POSTGRES_URL:-}" ]]; then
	exec "$@"
fi

# As root the server runs as the postgres user, which must be able to enter
# the directory: mktemp makes it private, so open it.
work=$(mktemp -d "${TMPDIR:-/tmp}/regent-pg.XXXXXX")
chmod 755 "$work"
pgserver="$work/pgserver"

stop_postgres() {
	local status=$?
	if [[ -x "$pgserver" && -d "$work/server/data" ]]; then
		"$pgserver" stop "$work/server" || status=1
	fi
	rm -rf "$work"
	exit "$status"
}
trap stop_postgres EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

go build -o "$pgserver" ./internal/testutil/pgtest/cmd/pgserver
mkdir "$work/server"
if url=$("$pgserver" start "$work/server"); then
	export REGENT_TEST_POSTGRES_URL="$url"
	echo "with-postgres: PostgreSQL for this run at $url" >&2
elif [[ "${CI:-}" == true ]]; then
	echo "with-postgres: cannot start PostgreSQL, which CI requires" >&2
	exit 1
else
	echo "with-postgres: cannot start PostgreSQL; tests needing it start their own or skip" >&2
fi

"$@"
