"""Scenario 3: a broker container is restarted and comes back with a new IP address; the
services find it again by name, and no confirmed message is lost.

Kafka is not here: the local Kafka-protocol image (tansu) keeps its data in memory only, so a
restart loses what it held whatever the client does (the Kafka adapter's reconnects are tested
in tests/kafka, against a proxy that cuts connections and a Tansu restart)."""

from __future__ import annotations

from pathlib import Path

import docker
import pytest
from stacks import (
    Stack,
    address,
    confirmed,
    free_subnet,
    healthy,
    jobs_handled,
    log,
    unhandled,
    wait_for,
)

from meshbus.testing.brokers import free_port

URLS = {"nats": "nats://nats:4222", "rabbitmq": "amqp://guest:guest@rabbitmq:5672/"}


@pytest.mark.parametrize("broker", list(URLS))
def test_a_broker_back_with_a_new_address_loses_nothing_confirmed(
    engine: docker.DockerClient, images: str, tmp_path: Path, broker: str
) -> None:
    # A fixed subnet, so that the broker's old address can be taken while it is down.
    override = tmp_path / "network.yml"
    override.write_text(
        f"networks:\n  mesh:\n    ipam:\n      config:\n        - subnet: {free_subnet(engine)}\n"
    )
    env = {
        "MESHBUS_URL": URLS[broker],
        "WORKERS": "2",
        **{f"{b.upper()}_PORT": str(free_port()) for b in ("nats", "rabbitmq", "kafka")},
    }
    stack = Stack(engine, f"restart-{broker}", ["brokered.yml", override], env, [broker])
    try:
        stack.compose("up", "--detach", "--wait", broker, "worker", timeout=300)
        stack.compose(
            "run", "--detach", "--no-deps", "--name", f"{stack.project}-producer-run",
            "producer", "python", "examples/producer.py", "--jobs", "0", "--rate", "50",
            "--events", "0",
        )  # fmt: skip
        wait_for("20 confirmed jobs", lambda: len(confirmed(stack.logs.records())) >= 20, 60)

        (container,) = stack.containers(broker)
        network = stack.network()
        old = address(container, network)
        container.stop(timeout=30)
        filler = engine.containers.create(
            "meshbus-local/debian:bookworm",
            ["sleep", "infinity"],
            labels={"mbe2e.project": stack.project},
        )
        engine.networks.get(network).connect(filler, ipv4_address=old)
        filler.start()
        before = len(confirmed(stack.logs.records()))
        container.start()
        new = address(container, network)
        log(f"{broker}: {old} -> {new}")
        assert new != old
        wait_for(f"{broker} healthy again", lambda: healthy(container), 120, every=1)
        wait_for(
            "50 more confirmed jobs",
            lambda: len(confirmed(stack.logs.records())) >= before + 50,
            120,
        )
        for producer in stack.containers("producer"):
            producer.stop(timeout=30)
        wait_for("the producer's summary", lambda: any(
            r.get("kind") == "done" for r in stack.logs.records()), 30)  # fmt: skip
        sent = confirmed(stack.logs.records())
        wait_for(
            "every confirmed job handled",
            lambda: sent <= set(jobs_handled(stack.logs.records("worker"))),
            120,
            detail=lambda: unhandled(stack, sent),
        )
        retries = [r for r in stack.logs.records() if r.get("kind") == "retry"]
        log(f"{broker}: {len(sent)} confirmed, all handled; {len(retries)} publishes retried")
    finally:
        stack.down()
