#!/usr/bin/env bash
# A local S3-API server for development and tests (moto's server; in-memory, lost at stop).
# A site points DVC and MLflow at its own S3 endpoint instead (AWS S3, MinIO, Ceph RGW): see docs/scale-out.md.
#   S3_HOST=127.0.0.1 S3_PORT=9000 S3_DIR=/tmp/cssl-s3 scripts/servers/s3.sh start|stop
# Clients see only an endpoint URL (http://S3_HOST:S3_PORT) and AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
set -euo pipefail
. "$(dirname "$0")/common.sh"
S3_HOST=${S3_HOST:-127.0.0.1}
S3_PORT=${S3_PORT:-9000}
S3_DIR=${S3_DIR:-/tmp/cssl-s3}
mkdir -p "$S3_DIR"
case "${1:-}" in
start)
    need moto_server "install the test requirements (requirements/) or activate the project's venv"
    need curl "install curl (used to poll readiness)"
    start_group "$S3_DIR/s3.pid" "$S3_DIR/s3.log" moto_server -H "$S3_HOST" -p "$S3_PORT"
    wait_until 60 "$S3_DIR/s3.log" "$(cat "$S3_DIR/s3.pid")" curl -sf "http://$S3_HOST:$S3_PORT/"
    echo "s3: http://$S3_HOST:$S3_PORT (pid $(cat "$S3_DIR/s3.pid"), log $S3_DIR/s3.log)"
    ;;
stop) stop_group "$S3_DIR/s3.pid" ;;
*) die "usage: s3.sh start|stop (env S3_HOST, S3_PORT, S3_DIR)" ;;
esac
