#!/usr/bin/env bash
# Code checks that CI runs before the tests: ruff (lint + format) and mypy, configured in pyproject.toml (both
# cover bench/ too); then every relative link of README.md and docs/ must resolve.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/python scripts/check_links.py
