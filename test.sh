#!/usr/bin/env bash
# Set up if needed, then run the tests.
#   ./test.sh          the whole suite: what CI runs (via .ci/run), on the real datasets where they are beside
#                      the checkout, browser and server tests included
#   ./test.sh --fast   the edit loop: synthetic media, no browser, no servers, no datasets (under a minute)
# Further arguments go to pytest (e.g. ./test.sh --fast -k fusion).
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error HF_HUB_DISABLE_PROGRESS_BARS=1
if [ "${1:-}" = --fast ]; then
  shift
  export RETRIEVAL_TEST_MEDIA=synthetic
  unset RETRIEVAL_TEST_POSTGRES RETRIEVAL_REQUIRE_POSTGRES RETRIEVAL_TEST_MILVUS RETRIEVAL_REQUIRE_MILVUS
  unset RETRIEVAL_TEST_RAY RETRIEVAL_REQUIRE_RAY
  set -- -m "not slow and not server and not real_media" "$@"
fi
# One OpenMP thread per process: the workers already fill the cores, and torch's threads spinning against each
# other (and against the browser and server processes of the UI tests) cost more than they gave. Measured on
# this 2-core machine, whole suite on two workers: ~415 CPU-s / 258 s wall with torch's default threads -> 257 / 191 s.
[ "${TEST_WORKERS:-auto}" = 0 ] || export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
# pytest-xdist: one worker per core; slow tests go first (tests/conftest.py deals them out).
exec .venv/bin/python -m pytest -q -n "${TEST_WORKERS:-auto}" --dist worksteal "$@"
