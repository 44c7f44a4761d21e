#!/usr/bin/env bash
# The main job: set up, then reproduce the whole DVC pipeline on the built-in demo data
# (demo-data -> ingest -> window -> quality), grouped under one MLflow parent run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH" DVC_NO_ANALYTICS=1
cssl repro "$@"
cssl summary
echo "done: outputs under data/, runs in mlflow.db (mlflow ui --backend-store-uri sqlite:///mlflow.db)"
