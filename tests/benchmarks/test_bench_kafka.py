"""kafka:// one-way throughput beside raw aiokafka and FastStream in the same run, on one local
Tansu broker.

All three: producer ``acks=all``, linger 5 ms, 1 MiB batches, 1024 messages in flight; consumer
in a consumer group (raw: manual commits, one per fetched batch; meshbus: acks, committed every
100 ms). FastStream's only manual-commit mode (``AckPolicy.ACK``) commits after every message,
which caps it near 0.9k msgs/s on Tansu at either size, so it runs with its default
``AckPolicy.ACK_FIRST`` (aiokafka's auto-commit every 5 s, a weaker guarantee in its favour).
Raw and FastStream gather the futures of 1024 unconfirmed sends (FastStream
``publish(..., no_confirm=True)``); meshbus publishes 1024 at a time with ``publish_many``
(one closed batch per partition, one confirm per batch). Tansu has no
idempotent producer, so all run with idempotence off here. FastStream runs with
``logger=None``: the figure is meant to show the framework, not its logging.

Joining a consumer group takes Tansu about half the session timeout, so each round times only
the stream (first send to last message received, both sides already connected and joined);
``msgs_per_s`` comes from the median of those times.

``make bench`` prints the figures; under ``make test`` each runs once as a smoke test.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from conftest import Runner, consume_acking

import meshbus
from meshbus.bus import Outgoing
from meshbus.testing.brokers import TansuBroker

pytest.importorskip("meshbus_kafka", reason="pip install -e adapters/kafka")
faststream_kafka = pytest.importorskip("faststream.kafka", reason="pip install faststream[kafka]")

SIZES = {"100B": 100, "16KiB": 16 * 1024}
COUNT = {"100B": 20_480, "16KiB": 5_120}
BATCH = 1024
OPTIONS = {
    "kafka": {"idempotence": False, "session_timeout_ms": 1000, "heartbeat_interval_ms": 100}
}


@pytest.fixture(scope="module")
def broker() -> Iterator[TansuBroker]:
    """One private Tansu broker for these benchmarks."""
    with TansuBroker() as tansu:
        yield tansu


def name() -> str:
    return "b" + uuid.uuid4().hex[:10]


async def raw(servers: str, size: int, count: int) -> float:
    payload = b"x" * size
    topic = name()
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 4, 1)])
    producer = AIOKafkaProducer(
        bootstrap_servers=servers, acks="all", linger_ms=5, max_batch_size=1 << 20
    )
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=servers,
        group_id="g",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=1000,
        heartbeat_interval_ms=100,
        fetch_max_wait_ms=50,
    )
    await producer.start()
    await consumer.start()
    while not consumer.assignment():
        await consumer.getmany(timeout_ms=50)

    async def consume() -> None:
        received = 0
        while received < count:
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                received += len(records)
            if batches:
                await consumer.commit()

    started = time.perf_counter()
    task = asyncio.create_task(consume())
    for start in range(0, count, BATCH):
        futures = [await producer.send(topic, payload) for _ in range(min(BATCH, count - start))]
        await asyncio.gather(*futures)
    await asyncio.wait_for(task, 60)
    elapsed = time.perf_counter() - started
    await producer.stop()
    await consumer.stop()
    await admin.delete_topics([topic])
    await admin.close()
    return elapsed


async def mesh(url: str, size: int, count: int) -> float:
    payload = b"x" * size
    subject = f"{name()}.data"
    async with (
        meshbus.connect(url, options=OPTIONS) as pub,
        meshbus.connect(url, options=OPTIONS) as con,
        con.subscribe(subject, group="g", prefetch=4096) as sub,
    ):
        started = time.perf_counter()
        consumer = asyncio.create_task(consume_acking(sub, count))
        chunk = [Outgoing(subject, payload)] * BATCH
        for _ in range(count // BATCH):
            await pub.publish_many(chunk)
        await asyncio.wait_for(consumer, 60)
        return time.perf_counter() - started


async def faststream(servers: str, size: int, count: int) -> float:
    from faststream import AckPolicy

    payload = b"x" * size
    topic = name()
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 4, 1)])
    broker = faststream_kafka.KafkaBroker(
        servers, acks="all", linger_ms=5, max_batch_size=1 << 20, logger=None
    )
    subscriber = broker.subscriber(
        topic,
        group_id="g",
        ack_policy=AckPolicy.ACK_FIRST,
        auto_offset_reset="earliest",
        session_timeout_ms=1000,
        heartbeat_interval_ms=100,
        fetch_max_wait_ms=50,
    )
    done = asyncio.Event()
    received = 0

    @subscriber
    async def on_msg(body: bytes) -> None:
        nonlocal received
        received += 1
        if received == count:
            done.set()

    await broker.start()
    try:
        for _ in range(600):  # joined: the group gave it partitions
            if subscriber.consumer.assignment():  # type: ignore[union-attr]
                break
            await asyncio.sleep(0.05)
        started = time.perf_counter()
        for start in range(0, count, BATCH):
            futures = [
                await broker.publish(payload, topic, no_confirm=True)
                for _ in range(min(BATCH, count - start))
            ]
            await asyncio.gather(*futures)
        await asyncio.wait_for(done.wait(), 120)
        elapsed = time.perf_counter() - started
    finally:
        await broker.stop()
    await admin.delete_topics([topic])
    await admin.close()
    return elapsed


def record(benchmark: object, times: list[float], count: int) -> None:
    """msgs/s from the median stream time (setup and group joins excluded)."""
    benchmark.extra_info["msgs_per_s"] = round(count / statistics.median(times))  # type: ignore[attr-defined]


@pytest.mark.parametrize("size", list(SIZES))
def test_kafka_raw_baseline(benchmark: object, run: Runner, broker: TansuBroker, size: str) -> None:
    """Raw aiokafka: send (acks=all, linger 5 ms, 1 MiB batch) -> group, manual commits."""
    times: list[float] = []
    benchmark.pedantic(  # type: ignore[attr-defined]
        lambda: times.append(run(lambda: raw(broker.bootstrap_servers, SIZES[size], COUNT[size]))),
        rounds=3,
        warmup_rounds=1,
    )
    record(benchmark, times[1:] or times, COUNT[size])


@pytest.mark.parametrize("size", list(SIZES))
def test_kafka_group(benchmark: object, run: Runner, broker: TansuBroker, size: str) -> None:
    """meshbus: publish_many -> group member acking each (commits every 100 ms)."""
    times: list[float] = []
    benchmark.pedantic(  # type: ignore[attr-defined]
        lambda: times.append(run(lambda: mesh(broker.url, SIZES[size], COUNT[size]))),
        rounds=3,
        warmup_rounds=1,
    )
    record(benchmark, times[1:] or times, COUNT[size])


@pytest.mark.parametrize("size", list(SIZES))
def test_kafka_faststream(benchmark: object, run: Runner, broker: TansuBroker, size: str) -> None:
    """FastStream 0.7: publish(no_confirm=True) gathered -> group subscriber, auto-commit."""
    times: list[float] = []
    benchmark.pedantic(  # type: ignore[attr-defined]
        lambda: times.append(
            run(lambda: faststream(broker.bootstrap_servers, SIZES[size], COUNT[size]))
        ),
        rounds=3,
        warmup_rounds=1,
    )
    record(benchmark, times[1:] or times, COUNT[size])
