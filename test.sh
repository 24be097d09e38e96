#!/usr/bin/env bash
# Set up if needed, then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error HF_HUB_DISABLE_PROGRESS_BARS=1
# One OpenMP thread per process: the workers already fill the cores, and torch's threads spinning against each
# other (and against the browser and server processes of the UI tests) cost more than they gave. Measured on
# this 2-core machine, whole suite on two workers: ~415 CPU-s / 258 s wall with torch's default threads -> 257 / 191 s.
[ "${TEST_WORKERS:-auto}" = 0 ] || export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
# pytest-xdist: one worker per core (2 here, 480 s -> see the closing note of issue 17); slow tests go first.
exec .venv/bin/python -m pytest -q -n "${TEST_WORKERS:-auto}" --dist worksteal "$@"
