#!/usr/bin/env bash
# Create .venv, install requirements.txt (exact pins) and the project itself (editable, so `retrieval` and
# `indexer` are commands and `from retrieval import SearchEngine` works from any folder).
# A no-op when requirements.txt and pyproject.toml are unchanged since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=.venv/.requirements.sha256
want=$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing requirements into .venv (a few minutes the first time)..." >&2
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r requirements.txt
  # --no-deps: the pins above are the dependencies; --no-build-isolation: setuptools comes with the venv's pip
  .venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .
  # numba compiles ranx's metrics on their first use and caches them beside ranx: do it once here, not on a
  # person's first evaluation (~60 CPU-s on this 2-core machine; 10 s after, most of it importing ranx)
  .venv/bin/python -c "from retrieval.evaluate import warm_up; warm_up()"
  # MiniLM exported to ONNX once (into ~/.cache/multimodal-retrieval, or $RETRIEVAL_CACHE): a text query
  # then runs through onnxruntime, ~1 s from the command line instead of ~7 s importing torch
  .venv/bin/python -m retrieval.encoders.sbert >/dev/null
  echo "$want" > "$stamp"
fi
