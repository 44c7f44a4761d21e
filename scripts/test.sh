#!/usr/bin/env bash
# The test suite: set up, lint, then every test (slow end-to-end ones included; add -m 'not slow' to skip them).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH" DVC_NO_ANALYTICS=1
ruff check .
python -m pytest "$@"
