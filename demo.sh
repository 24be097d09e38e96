#!/usr/bin/env bash
# Set up, build and index the digits demo collection (SQLite at data/demo.db), train the learned strategies on
# its train split, then compare two methods on one sample query (their lists, overlap and a summary).
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error HF_HUB_DISABLE_PROGRESS_BARS=1
.venv/bin/python -m indexer demo --db sqlite:///data/demo.db
# where `indexer demo` found the datasets (../shared/datasets, or data/datasets where it fetched them)
datasets=$(.venv/bin/python -c "from indexer.datasets import datasets_dir; print(datasets_dir())")
.venv/bin/python -m retrieval compare --db sqlite:///data/demo.db \
  --text "the digit seven" --audio "$datasets/fsdd/recordings/7_nicolas_0.wav" \
  --strategy late --strategy gated --k 5
