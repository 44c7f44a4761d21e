#!/usr/bin/env bash
# A local PostgreSQL 15 cluster for MLflow's tracking and registry store (development and tests).
#   PG_HOST=127.0.0.1 PG_PORT=5432 PG_DIR=/tmp/cssl-pg PG_DB=mlflow scripts/servers/postgres.sh start|stop|uri
# `uri` prints the connection URI of the cluster's database user (the OS user that owns it: postgres as root),
# which is what MLflow's --backend-store-uri needs; $USER is empty for root in many shells and containers.
# The cluster lives in PG_DIR/data, its unix socket in PG_DIR (never /var/run), and it listens on PG_HOST only.
# Local trust authentication for the OS user running it: for a shared host use password (scram-sha-256)
# authentication instead, see docs/scale-out.md. PostgreSQL refuses to run as root: as root the cluster
# runs as PG_OS_USER (default postgres), which then owns PG_DIR.
set -euo pipefail
. "$(dirname "$0")/common.sh"
PG_HOST=${PG_HOST:-127.0.0.1}
PG_PORT=${PG_PORT:-5432}
PG_DIR=${PG_DIR:-/tmp/cssl-pg}
PG_DB=${PG_DB:-mlflow}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
[ -x "$PG_BIN/pg_ctl" ] || PG_BIN=$(dirname "$(command -v pg_ctl 2>/dev/null || echo /nonexistent/pg_ctl)")
[ -x "$PG_BIN/pg_ctl" ] || die "pg_ctl not found in PG_BIN=$PG_BIN nor on PATH: install PostgreSQL 15 (apt-get install postgresql-15) or set PG_BIN"

as_owner() {
    if [ "$(id -u)" = 0 ]; then runuser -u "${PG_OS_USER:-postgres}" -- "$@"; else "$@"; fi
}
owner() { if [ "$(id -u)" = 0 ]; then echo "${PG_OS_USER:-postgres}"; else id -un; fi; }

case "${1:-}" in
start)
    mkdir -p "$PG_DIR"
    [ "$(id -u)" = 0 ] && chown "$(owner)" "$PG_DIR"
    if [ ! -f "$PG_DIR/data/PG_VERSION" ]; then
        as_owner "$PG_BIN/initdb" -D "$PG_DIR/data" -U "$(owner)" -A trust -E UTF8 --no-locale >"$PG_DIR/initdb.log" 2>&1 \
            || { tail -n 20 "$PG_DIR/initdb.log" >&2; die "initdb failed (log: $PG_DIR/initdb.log)"; }
    fi
    as_owner "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/postgres.log" -w -t 60 \
        -o "-c listen_addresses=$PG_HOST -p $PG_PORT -k $PG_DIR" start >/dev/null \
        || { tail -n 20 "$PG_DIR/postgres.log" >&2; die "pg_ctl start failed (log: $PG_DIR/postgres.log)"; }
    if ! as_owner "$PG_BIN/psql" -h "$PG_HOST" -p "$PG_PORT" -d postgres -tAc \
            "SELECT 1 FROM pg_database WHERE datname='$PG_DB'" | grep -q 1; then
        as_owner "$PG_BIN/createdb" -h "$PG_HOST" -p "$PG_PORT" "$PG_DB"
    fi
    echo "postgres: postgresql://$(owner)@$PG_HOST:$PG_PORT/$PG_DB (data $PG_DIR/data, log $PG_DIR/postgres.log)"
    ;;
stop)
    [ -f "$PG_DIR/data/postmaster.pid" ] || { echo "postgres.sh: not running"; exit 0; }
    # fast = SIGINT to the postmaster (roll back sessions, shut down cleanly); immediate if that hangs
    as_owner "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w -t 20 stop >/dev/null \
        || as_owner "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate -w -t 10 stop >/dev/null
    ;;
uri)
    echo "postgresql://$(owner)@$PG_HOST:$PG_PORT/$PG_DB"
    ;;
*) die "usage: postgres.sh start|stop|uri (env PG_HOST, PG_PORT, PG_DIR, PG_DB, PG_BIN, PG_OS_USER)" ;;
esac
