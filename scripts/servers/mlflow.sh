#!/usr/bin/env bash
# An MLflow tracking server: runs, params, metrics and the model registry in a database (PostgreSQL), artifacts
# proxied by the server into S3, so clients need only the server URL (no S3 credentials of their own).
#   MLFLOW_HOST=127.0.0.1 MLFLOW_PORT=5000 MLFLOW_DIR=/tmp/cssl-mlflow \
#   MLFLOW_BACKEND_URI=postgresql://user@127.0.0.1:5432/mlflow MLFLOW_ARTIFACTS=s3://bucket/mlflow \
#   MLFLOW_S3_ENDPOINT_URL=http://127.0.0.1:9000 AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... \
#   scripts/servers/mlflow.sh start|stop
# MLFLOW_S3_ENDPOINT_URL is only needed for an S3 API other than AWS (MinIO, a local test server).
set -euo pipefail
. "$(dirname "$0")/common.sh"
MLFLOW_HOST=${MLFLOW_HOST:-127.0.0.1}
MLFLOW_PORT=${MLFLOW_PORT:-5000}
MLFLOW_DIR=${MLFLOW_DIR:-/tmp/cssl-mlflow}
MLFLOW_WORKERS=${MLFLOW_WORKERS:-2}
# MLflow's background job runner (huey consumers, for GenAI features) is not used by this project: off by
# default, which saves about eight processes; set MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true to have it
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}
mkdir -p "$MLFLOW_DIR"
case "${1:-}" in
start)
    : "${MLFLOW_BACKEND_URI:?set MLFLOW_BACKEND_URI, e.g. postgresql://user@127.0.0.1:5432/mlflow}"
    : "${MLFLOW_ARTIFACTS:?set MLFLOW_ARTIFACTS, e.g. s3://bucket/mlflow}"
    case "$MLFLOW_BACKEND_URI" in  # an empty $USER (root) leaves no user, and PostgreSQL then tries role "root"
        postgresql://@*|postgresql://:*) die "MLFLOW_BACKEND_URI $MLFLOW_BACKEND_URI names no database user (was \$USER empty?); use MLFLOW_BACKEND_URI=\$(scripts/servers/postgres.sh uri) for the local cluster" ;;
    esac
    need mlflow "install the requirements (requirements/) or activate the project's venv"
    need curl "install curl (used to poll readiness)"
    start_group "$MLFLOW_DIR/mlflow.pid" "$MLFLOW_DIR/mlflow.log" mlflow server \
        --backend-store-uri "$MLFLOW_BACKEND_URI" --artifacts-destination "$MLFLOW_ARTIFACTS" \
        --host "$MLFLOW_HOST" --port "$MLFLOW_PORT" --workers "$MLFLOW_WORKERS" \
        --uvicorn-opts "--timeout-graceful-shutdown ${MLFLOW_GRACEFUL_S:-5}"
    wait_until 120 "$MLFLOW_DIR/mlflow.log" "$(cat "$MLFLOW_DIR/mlflow.pid")" \
        curl -sf "http://$MLFLOW_HOST:$MLFLOW_PORT/health"
    echo "mlflow: http://$MLFLOW_HOST:$MLFLOW_PORT (pid $(cat "$MLFLOW_DIR/mlflow.pid"), log $MLFLOW_DIR/mlflow.log)"
    ;;
stop) # SIGTERM: uvicorn finishes requests in flight (up to MLFLOW_GRACEFUL_S), then SIGKILL after 10 s
    stop_group "$MLFLOW_DIR/mlflow.pid" ;;
*) die "usage: mlflow.sh start|stop (env MLFLOW_HOST, MLFLOW_PORT, MLFLOW_DIR, MLFLOW_BACKEND_URI, MLFLOW_ARTIFACTS)" ;;
esac
