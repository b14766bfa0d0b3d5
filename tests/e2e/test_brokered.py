"""The example services over each broker, in containers: a group shares the jobs between two
replicas, every replica gets every broadcast, requests are answered (the restart scenario for
NATS and RabbitMQ is in test_broker_restart.py)."""

from __future__ import annotations

import docker
import pytest
from stacks import (
    Stack,
    broadcasts,
    jobs_handled,
    jobs_per_worker,
    log,
    unhandled,
    wait_for,
)

from meshbus.testing.brokers import free_port

URLS = {
    "nats": "nats://nats:4222",
    "rabbitmq": "amqp://guest:guest@rabbitmq:5672/",
    # The local Kafka-protocol image (tansu) has no idempotent producers.
    "kafka": "kafka://kafka:9092?idempotence=false",
}


KAFKA_JOBS_TOPIC = """
import asyncio
import dataclasses
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from meshbus_kafka._names import topic_of
from meshbus_kafka._options import KafkaOptions

async def main():
    partitions = {f.name: f.default for f in dataclasses.fields(KafkaOptions)}["partitions"]
    admin = AIOKafkaAdminClient(bootstrap_servers="kafka:9092")
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic_of("jobs.work"), partitions, 1)])
        print("created")
    finally:
        await admin.close()

asyncio.run(main())
"""
"""Run in a container on the stack's network before the workers start: creates the topic of
``jobs.work`` as the producer's first publish would (same name, meshbus's default partitions)."""

KAFKA_GROUP_SETTLED = """
import asyncio
from aiokafka.admin import AIOKafkaAdminClient

async def main():
    admin = AIOKafkaAdminClient(bootstrap_servers="kafka:9092")
    await admin.start()
    try:
        for _ in range(200):
            (answer,) = await admin.describe_consumer_groups(["workers@jobs.>"])
            _, _, state, _, _, members = answer.groups[0]
            if state == "Stable" and len(members) == 2:
                print("settled")
                return
            await asyncio.sleep(0.3)
        print("not settled:", state, len(members))
    finally:
        await admin.close()

asyncio.run(main())
"""
"""Run in a container on the stack's network: waits until the workers' consumer group is
stable with both members (each then has its partitions)."""


@pytest.mark.parametrize("broker", list(URLS))
def test_replicas_share_a_group_over_a_broker(
    engine: docker.DockerClient, images: str, broker: str
) -> None:
    env = {
        "MESHBUS_URL": URLS[broker],
        "WORKERS": "2",
        **{f"{b.upper()}_PORT": str(free_port()) for b in URLS},
    }
    stack = Stack(engine, f"brokered-{broker}", ["brokered.yml"], env, [broker])
    try:
        if broker == "kafka":
            # The workers subscribe to jobs.> by pattern. A topic that appears after they
            # joined is picked up by each member's own metadata refresh, and the first member
            # to see it is given all of its partitions until the next rebalance: the jobs
            # published first would all go to that one. So the topic is there before they are.
            stack.compose("up", "--detach", "--wait", broker, timeout=300)
            created = stack.compose(
                "run", "--rm", "--no-deps", "producer", "python", "-c", KAFKA_JOBS_TOPIC,
                timeout=120,
            )  # fmt: skip
            assert "created" in created, created
        stack.compose("up", "--detach", "--wait", broker, "worker", timeout=300)
        wait_for(
            "two workers ready",
            lambda: sum(r["kind"] == "ready" for r in stack.logs.records("worker")) == 2,
            60,
        )
        if broker == "kafka":
            # A member is ready once it has its first partitions, and the second one to join
            # starts a rebalance that may still be running: jobs published then all go to
            # whichever member holds the partitions at that moment.
            settled = stack.compose(
                "run", "--rm", "--no-deps", "producer", "python", "-c", KAFKA_GROUP_SETTLED,
                timeout=120,
            )  # fmt: skip
            assert "settled" in settled, settled
        out = stack.compose(
            "run", "--rm", "--no-deps", "producer", "python", "examples/producer.py",
            "--jobs", "200", "--events", "3", "--requests", "2", "--settle", "2", "--keys", "16",
        )  # fmt: skip
        assert '"kind": "done", "jobs": 200, "confirmed": 200' in out, out[-2000:]
        sent = set(range(200))
        wait_for(
            "every job handled",
            lambda: sent <= set(jobs_handled(stack.logs.records("worker"))),
            60,
            detail=lambda: unhandled(stack, sent),
        )
        records = stack.logs.records("worker")
        per_worker = jobs_per_worker(records)
        log(f"{broker}: jobs per replica {per_worker}")
        assert len(per_worker) == 2, per_worker
        for worker in {r["worker"] for r in records if r["kind"] == "ready"}:
            events = broadcasts(records, worker)
            assert events == [0, 1, 2], f"{worker} got broadcasts {events}"
        assert out.count('"kind": "reply"') == 2
    finally:
        stack.down()
