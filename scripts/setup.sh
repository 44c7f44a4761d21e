#!/usr/bin/env bash
# Creates or refreshes the project's virtual environment in .venv: CPU torch pinned to 2.13.0 (an
# unpinned torch pulls a multi-GB CUDA build), the pinned stack, the pycerr demo data without its
# dependencies, and this project in editable mode. Re-runs are no-ops until the requirements change.
set -euo pipefail
cd "$(dirname "$0")/.."

pick_python() {
  for candidate in "${PYTHON:-}" python3.11 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)'; then
      echo "$candidate"; return 0
    fi
  done
  echo "error: Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2
  return 1
}

stamp_value=$(cat requirements/cpu.txt pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ -x .venv/bin/python ] && [ "$(cat .venv/.setup-stamp 2>/dev/null)" = "$stamp_value" ]; then
  exit 0
fi
python_bin=$(pick_python)
echo "setting up .venv with $python_bin (a few minutes the first time)..." >&2
"$python_bin" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -r requirements/cpu.txt
.venv/bin/python -m pip install --quiet --no-deps pycerr==2.5.1
.venv/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
echo "$stamp_value" > .venv/.setup-stamp
echo "set-up done: activate with 'source .venv/bin/activate'" >&2
