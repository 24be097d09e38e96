#!/usr/bin/env bash
# Start a two-node local Ray cluster (a head and a second node, one CPU each) for the tests, and print its
# address. Usage: export RETRIEVAL_TEST_RAY=$(bash scripts/ray-cluster.sh) RAY_AUTH_MODE=token
# RAY_AUTH_TOKEN_PATH=/tmp/retrieval-ray/auth_token; stop it with `bash scripts/ray-cluster.sh stop`. Token
# authentication is on, as Ray 2.60 turns it on wherever a token exists; the token is this cluster's own file
# in its folder (never ~/.ray/auth_token, which would turn it on for every Ray on the machine). Nodes
# advertise 127.0.0.1, but Ray listens on every interface (docs/reliability.md).
# Processes and logs in $RAY_TEST_DIR (default /tmp/retrieval-ray); only the processes it started are stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${RAY_TEST_DIR:-/tmp/retrieval-ray}
ray=.venv/bin/ray
export RAY_AUTH_MODE=token RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_TOKEN_PATH="$dir/auth_token"
if [ "${1:-}" = stop ]; then
  if [ -s "$dir/pids" ]; then
    # with their children: Ray's agents rename themselves (ray::DashboardAgent), so only their parents know them
    pids=$(cat "$dir/pids")
    all=$pids
    while [ -n "$pids" ]; do pids=$(pgrep -P "$(echo $pids | tr ' ' ,)" || true); all="$all $pids"; done
    kill -9 $all 2>/dev/null || true
  fi
  rm -f "$dir/pids" "$dir/address"
  exit 0
fi
if [ -s "$dir/address" ] && "$ray" status --address "$(cat "$dir/address")" >/dev/null 2>&1; then
  cat "$dir/address"
  exit 0
fi
rm -rf "$dir"
mkdir -p "$dir"
(umask 077 && .venv/bin/python -c 'import secrets; print(secrets.token_hex(32))' >"$RAY_AUTH_TOKEN_PATH")
free_port() { .venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port)
node=(--num-cpus 1 --node-ip-address 127.0.0.1 --temp-dir "$dir/tmp" --dashboard-agent-listen-port "$(free_port)")  # no fixed ports: two checkouts may each run one
"$ray" start --head --port "$port" --include-dashboard false --dashboard-port "$(free_port)" \
  --ray-client-server-port "$(free_port)" "${node[@]}" \
  >"$dir/head.log" 2>&1 || { cat "$dir/head.log" >&2; exit 1; }
node[-1]=$(free_port)
"$ray" start --address "127.0.0.1:$port" "${node[@]}" >"$dir/node.log" 2>&1 || { cat "$dir/node.log" >&2; exit 1; }
pgrep -f -- "$dir/tmp" >"$dir/pids" || true  # this cluster's processes, by its own folder: never another's
for _ in $(seq 1 60); do  # the second node registers a few seconds after `ray start` returns
  [ "$("$ray" status --address "127.0.0.1:$port" 2>/dev/null | grep -c ' node_')" -ge 2 ] && break
  sleep 1
done
echo "127.0.0.1:$port" | tee "$dir/address"
