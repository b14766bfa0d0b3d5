#!/bin/bash
set -euo pipefail
advertised=localhost:9092
IFS=, read -ra listeners <<<"${KAFKA_ADVERTISED_LISTENERS:-}"
for listener in "${listeners[@]}"; do
    if [[ $listener == PLAINTEXT://* ]]; then advertised=${listener#PLAINTEXT://}; break; fi
done
exec tansu broker --listener-url tcp://0.0.0.0:9092 --advertised-listener-url "tcp://$advertised" \
    --cluster-id "${CLUSTER_ID:-meshbus}" "$@"
