#!/usr/bin/env bash
# The test suite: set up, lint, then every test, the slow end-to-end ones included (plain `pytest` skips
# those: about a minute instead of 15-25 on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH" DVC_NO_ANALYTICS=1
ruff check .
python -m pytest -m "slow or not slow" "$@"
