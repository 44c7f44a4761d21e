#!/usr/bin/env bash
# The test suite: set up, lint, then every test, the slow end-to-end ones included (plain `pytest` skips those).
# Prints the suite's wall time and its 20 slowest tests at the end, so that every run shows the suite's drift;
# README.md states the measured figures.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH" DVC_NO_ANALYTICS=1
ruff check .
started=$(date +%s)
status=0
python -m pytest -m "slow or not slow" --durations=20 "$@" || status=$?
elapsed=$(( $(date +%s) - started ))
printf 'test suite: %d min %02d s wall (pytest, set-up and lint excluded), exit %d\n' \
  $(( elapsed / 60 )) $(( elapsed % 60 )) "$status"
exit "$status"
