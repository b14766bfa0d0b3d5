#!/bin/bash
set -euo pipefail
mkdir -p /etc/rabbitmq "$RABBITMQ_MNESIA_BASE" "$RABBITMQ_LOG_BASE"
cat >/etc/rabbitmq/rabbitmq.conf <<CONF
loopback_users.guest = false
listeners.tcp.default = 5672
default_user = ${RABBITMQ_DEFAULT_USER:-guest}
default_pass = ${RABBITMQ_DEFAULT_PASS:-guest}
CONF
echo '[].' >/etc/rabbitmq/enabled_plugins
if [[ ${1:-} == rabbitmq-server ]]; then shift; set -- /usr/lib/rabbitmq/bin/rabbitmq-server "$@"; fi
exec "$@"
