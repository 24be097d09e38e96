#!/usr/bin/env bash
# Start a throwaway PostgreSQL (Debian's) on 127.0.0.1 for the tests, and print its SQLAlchemy URL.
# Usage: export RETRIEVAL_TEST_POSTGRES=$(bash scripts/postgres.sh)
# Trust authentication on loopback only; the data lives in $PG_TEST_DIR (default /tmp/retrieval-pg).
set -euo pipefail
port=${PG_TEST_PORT:-55432}
dir=${PG_TEST_DIR:-/tmp/retrieval-pg}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
if [ -z "$bin" ]; then
  echo "PostgreSQL is not installed (apt-get install postgresql)" >&2
  exit 1
fi
run=()
if [ "$(id -u)" = 0 ]; then run=(runuser -u postgres --); fi  # the server refuses to run as root
if ! "${run[@]}" "$bin/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
  rm -rf "$dir"
  mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; fi
  "${run[@]}" "$bin/initdb" -D "$dir" -U retrieval --auth=trust >/dev/null
  "${run[@]}" "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w \
    -o "-p $port -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
fi
echo "postgresql+psycopg://retrieval@127.0.0.1:$port/postgres"
