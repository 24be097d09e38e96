#!/usr/bin/env bash
# Set up, build and index the digits demo collection (SQLite at data/demo.db), then run one sample query.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error HF_HUB_DISABLE_PROGRESS_BARS=1
.venv/bin/python -m indexer demo --db sqlite:///data/demo.db
datasets=${DIGITS_DATASETS:-../shared/datasets}
.venv/bin/python -m retrieval search --db sqlite:///data/demo.db \
  --text "the digit seven" --audio "$datasets/fsdd/recordings/7_nicolas_0.wav" \
  --strategy late --strategy early --k 5
