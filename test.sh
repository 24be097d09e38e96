#!/usr/bin/env bash
# Set up if needed, then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error HF_HUB_DISABLE_PROGRESS_BARS=1
# pytest-xdist: one worker per core (2 here, 480 s -> see the closing note of issue 17); slow tests go first.
exec .venv/bin/python -m pytest -q -n "${TEST_WORKERS:-auto}" --dist worksteal "$@"
