#!/usr/bin/env bash
# Start a throwaway Milvus standalone server (the `milvus` wheel's embedded server, 2.3.5) on 127.0.0.1 for
# the tests, and print its URI. Usage: export RETRIEVAL_TEST_MILVUS=$(bash scripts/milvus.sh); stop it with
# `bash scripts/milvus.sh stop`. The server gets a virtualenv of its own ($MILVUS_VENV, default .milvus-venv:
# its pins clash with nothing of ours, and 2.3.5 is the newest Linux wheel); data in $MILVUS_TEST_DIR (default
# /tmp/retrieval-milvus), the client port is $MILVUS_TEST_PORT or a free one. Every component's address is
# 127.0.0.1, but Milvus 2.3 listens on every interface: a server here is for a machine you trust (docs/reliability.md).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${MILVUS_VENV:-.milvus-venv}
dir=${MILVUS_TEST_DIR:-/tmp/retrieval-milvus}
py=${PYTHON:-python3}
if [ "${1:-}" = stop ]; then
  if [ -f "$dir/launcher.pid" ]; then kill "$(cat "$dir/launcher.pid")" 2>/dev/null || true; fi
  rm -f "$dir/launcher.pid" "$dir/uri"
  exit 0
fi
if [ -f "$dir/launcher.pid" ] && kill -0 "$(cat "$dir/launcher.pid")" 2>/dev/null && [ -s "$dir/uri" ]; then
  cat "$dir/uri"  # already running: one server serves every test run, each test in its own database
  exit 0
fi
if [ ! -x "$venv/bin/milvus-server" ]; then
  "$py" -m venv "$venv" >&2
  "$venv/bin/pip" install -q "milvus==2.3.5" >&2
fi
rm -rf "$dir"
mkdir -p "$dir"
port=${MILVUS_TEST_PORT:-$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
# The wheel's own launcher finds a free port for each inner component (etcd, coordinators, nodes), but its
# embedded etcd's peer port is 2380 whatever is asked: one such server a machine, which every checkout then
# shares through the default $MILVUS_TEST_DIR (above: a running one is reused). SIGTERM stops it.
nohup "$venv/bin/python" - "$dir" "$port" >"$dir/launcher.log" 2>&1 <<'EOF' &
import signal, sys
from milvus import MilvusServer
data, port = sys.argv[1], int(sys.argv[2])
server = MilvusServer()
server.set_base_dir(data)
server.config.set("proxy_port", port)
for part in ("rootCoord", "proxy", "queryCoord", "queryNode", "indexNode", "dataCoord", "dataNode"):
    server.config.set(f"{part}.ip", "127.0.0.1")
signal.signal(signal.SIGTERM, lambda *_: (server.stop(), sys.exit(0)))
server.start()
with open(f"{data}/uri", "w") as out:
    out.write(f"http://127.0.0.1:{port}\n")
server.wait()
EOF
echo $! >"$dir/launcher.pid"
for _ in $(seq 1 180); do
  if [ -s "$dir/uri" ]; then
    cat "$dir/uri"
    exit 0
  fi
  if ! kill -0 "$(cat "$dir/launcher.pid")" 2>/dev/null; then break; fi
  sleep 1
done
echo "Milvus did not start; see $dir/launcher.log and $dir/logs" >&2
exit 1
