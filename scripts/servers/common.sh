# Shared by s3.sh, postgres.sh and mlflow.sh: background start with a pid file, readiness poll, stop.
# Sourced, not run.

die() { echo "$(basename "$0"): $*" >&2; exit 1; }

need() {  # need BINARY WHAT-TO-DO
    command -v "$1" >/dev/null 2>&1 || die "'$1' not found on PATH: $2"
}

# wait_until SECONDS LOG PID COMMAND...: poll COMMAND every 0.2 s until it succeeds; fail early when PID exits
wait_until() {
    local limit=$1 log=$2 pid=$3; shift 3
    local deadline=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "--- last lines of $log" >&2; tail -n 20 "$log" >&2
            die "server exited before it was ready (log: $log)"
        fi
        [ "$SECONDS" -lt "$deadline" ] || die "not ready after ${limit}s (log: $log)"
        sleep 0.2
    done
}

# stop_group PIDFILE: SIGTERM the process group started by start_group, wait up to 10 s, then SIGKILL
stop_group() {
    local pidfile=$1 pid
    [ -f "$pidfile" ] || { echo "$(basename "$0"): not running (no $pidfile)"; return 0; }
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}

# start_group PIDFILE LOG COMMAND...: run COMMAND in its own session (so stop_group reaches its workers)
start_group() {
    local pidfile=$1 log=$2; shift 2
    if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        die "already running (pid $(cat "$pidfile"), $pidfile): stop it first"
    fi
    setsid "$@" >"$log" 2>&1 < /dev/null &
    echo $! > "$pidfile"
}
