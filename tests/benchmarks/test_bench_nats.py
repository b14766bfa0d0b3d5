"""nats:// throughput and request/reply beside raw nats-py in the same run, on one local server.

- broadcast one way (100 B, 16 KiB): meshbus publish -> broadcast subscriber, vs raw nats-py
  core publish -> subscribe;
- group (100 B): meshbus ``publish_many`` (pipelined PubAcks) -> group member acking each, vs
  raw nats-py JetStream ``publish_async`` -> push consumer acking each;
- request/reply p50 (100 B), vs raw nats-py ``request``;
- FastStream 0.7.8 over NATS core, broadcast one way (100 B, 16 KiB), run as the raw case is:
  one connection publishing each message, one subscriber handler counting them (its
  per-message log line off: ``logger=None``).

``make bench`` prints the figures; under ``make test`` each runs once as a smoke test.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import nats
import pytest
from conftest import Runner, consume_acking, record_latency, record_throughput, time_requests
from nats.js.api import RetentionPolicy

import meshbus
from meshbus.bus import Outgoing
from meshbus.testing.brokers import NatsServer

pytest.importorskip("meshbus_nats", reason="pip install -e adapters/nats")

SIZES = {"100B": 100, "16KiB": 16 * 1024}
COUNT = {"100B": 20_480, "16KiB": 5_120}
GROUP_COUNT = 10_240
BATCH = 256


@pytest.fixture(scope="module")
def server() -> Iterator[NatsServer]:
    """One private NATS server for these benchmarks."""
    with NatsServer() as nats_server:
        yield nats_server


async def settled(nc: nats.aio.client.Client) -> None:
    """Make sure the server has this connection's subscriptions. nats-py 2.16's ``flush()``
    writes its PING ahead of a SUB still waiting for the flusher task, so one flush can return
    before the server has the SUB; a second one cannot (meshbus_nats's client fixes this)."""
    await nc.flush()
    await nc.flush()


def space() -> str:
    return "b" + uuid.uuid4().hex[:10]


async def raw_core(url: str, size: int, count: int) -> None:
    payload = b"x" * size
    pub, con = await nats.connect(url), await nats.connect(url)
    done = asyncio.Event()
    received = 0

    async def on_msg(msg: object) -> None:
        nonlocal received
        received += 1
        if received == count:
            done.set()

    await con.subscribe("bench.core", cb=on_msg)
    await settled(con)
    for _ in range(count):
        await pub.publish("bench.core", payload)
    await asyncio.wait_for(done.wait(), 60)
    await pub.close()
    await con.close()


async def meshbus_broadcast(url: str, size: int, count: int) -> None:
    payload = b"x" * size
    subject = f"{space()}.data"
    async with (
        meshbus.connect(url) as pub,
        meshbus.connect(url) as con,
        con.subscribe(subject) as sub,
    ):
        consumer = asyncio.create_task(consume_acking(sub, count))
        for _ in range(count):
            await pub.publish(subject, payload)
        await asyncio.wait_for(consumer, 60)


async def faststream_core(url: str, size: int, count: int) -> None:
    from faststream.nats import NatsBroker

    payload = b"x" * size
    subject = f"{space()}.data"
    done = asyncio.Event()
    received = 0
    con, pub = NatsBroker(url, logger=None), NatsBroker(url, logger=None)

    @con.subscriber(subject)
    async def on_msg(body: bytes) -> None:
        nonlocal received
        received += 1
        if received == count:
            done.set()

    await con.start()
    await settled(con._connection)  # FastStream's nats-py client
    await pub.connect()
    for _ in range(count):
        await pub.publish(payload, subject)
    await asyncio.wait_for(done.wait(), 120)
    await pub.stop()
    await con.stop()


async def raw_jetstream(url: str, size: int, count: int) -> None:
    payload = b"x" * size
    name = space()
    pub, con = await nats.connect(url), await nats.connect(url)
    js, cjs = pub.jetstream(publish_async_max_pending=BATCH), con.jetstream()
    await js.add_stream(name=name, subjects=[f"{name}.>"], retention=RetentionPolicy.INTEREST)
    done = asyncio.Event()
    received = 0

    async def on_msg(msg: nats.aio.msg.Msg) -> None:
        nonlocal received
        await msg.ack()
        received += 1
        if received == count:
            done.set()

    await cjs.subscribe(f"{name}.data", durable="g", cb=on_msg, manual_ack=True)
    for _ in range(count):
        await js.publish_async(f"{name}.data", payload)
    await js.publish_async_completed()
    await asyncio.wait_for(done.wait(), 60)
    await js.delete_stream(name)
    await pub.close()
    await con.close()


async def meshbus_group(url: str, size: int, count: int) -> None:
    payload = b"x" * size
    subject = f"{space()}.data"
    async with (
        meshbus.connect(url) as pub,
        meshbus.connect(url) as con,
        con.subscribe(subject, group="g") as sub,
    ):
        consumer = asyncio.create_task(consume_acking(sub, count))
        chunk = [Outgoing(subject, payload)] * BATCH
        for _ in range(count // BATCH):
            await pub.publish_many(chunk)
        await asyncio.wait_for(consumer, 60)


@pytest.mark.parametrize("size", list(SIZES))
def test_nats_raw_core_baseline(
    benchmark: object, run: Runner, server: NatsServer, size: str
) -> None:
    """Raw nats-py: core publish -> subscribe callback."""
    benchmark.pedantic(  # type: ignore[attr-defined]
        lambda: run(lambda: raw_core(server.url, SIZES[size], COUNT[size])),
        rounds=5,
        warmup_rounds=1,
    )
    record_throughput(benchmark, COUNT[size])


@pytest.mark.parametrize("size", list(SIZES))
def test_nats_broadcast(benchmark: object, run: Runner, server: NatsServer, size: str) -> None:
    """meshbus broadcast: publish each -> subscriber acking each."""
    benchmark.pedantic(  # type: ignore[attr-defined]
        lambda: run(lambda: meshbus_broadcast(server.url, SIZES[size], COUNT[size])),
        rounds=5,
        warmup_rounds=1,
    )
    record_throughput(benchmark, COUNT[size])


@pytest.mark.parametrize("size", list(SIZES))
def test_nats_faststream_core(
    benchmark: object, run: Runner, server: NatsServer, size: str
) -> None:
    """FastStream 0.7.8 over NATS core: publish each -> subscriber handler."""
    pytest.importorskip("faststream.nats", reason="pip install 'faststream[nats]'")
    benchmark.pedantic(  # type: ignore[attr-defined]
        lambda: run(lambda: faststream_core(server.url, SIZES[size], COUNT[size])),
        rounds=5,
        warmup_rounds=1,
    )
    record_throughput(benchmark, COUNT[size])


def test_nats_raw_jetstream_baseline(benchmark: object, run: Runner, server: NatsServer) -> None:
    """Raw nats-py JetStream: publish_async (256 pending) -> push consumer acking each."""
    benchmark.pedantic(  # type: ignore[attr-defined]
        lambda: run(lambda: raw_jetstream(server.url, 100, GROUP_COUNT)),
        rounds=3,
        warmup_rounds=1,
    )
    record_throughput(benchmark, GROUP_COUNT)


def test_nats_group(benchmark: object, run: Runner, server: NatsServer) -> None:
    """meshbus group: publish_many of 256 (pipelined PubAcks) -> member acking each."""
    benchmark.pedantic(  # type: ignore[attr-defined]
        lambda: run(lambda: meshbus_group(server.url, 100, GROUP_COUNT)),
        rounds=3,
        warmup_rounds=1,
    )
    record_throughput(benchmark, GROUP_COUNT)


ROUNDS = 1_000


async def raw_request(url: str, samples: list[float]) -> None:
    client, responder = await nats.connect(url), await nats.connect(url)

    async def respond(msg: nats.aio.msg.Msg) -> None:
        await msg.respond(msg.data)

    await responder.subscribe("bench.rpc", queue="svc", cb=respond)
    await settled(responder)
    payload = b"x" * 100
    for _ in range(ROUNDS):
        start = time.perf_counter()
        await client.request("bench.rpc", payload, timeout=5)
        samples.append(time.perf_counter() - start)
    await client.close()
    await responder.close()


async def meshbus_request(url: str, samples: list[float]) -> None:
    async with meshbus.connect(url) as client, meshbus.connect(url) as server:
        await time_requests(client, server, f"{space()}.rpc", ROUNDS, samples)


def test_nats_raw_request_baseline(benchmark: object, run: Runner, server: NatsServer) -> None:
    """Raw nats-py request -> queue subscriber responding."""
    samples: list[float] = []
    benchmark.pedantic(  # type: ignore[attr-defined]
        lambda: run(lambda: raw_request(server.url, samples)), rounds=3, warmup_rounds=1
    )
    record_throughput(benchmark, ROUNDS)
    record_latency(benchmark, samples)


def test_nats_request_reply(benchmark: object, run: Runner, server: NatsServer) -> None:
    """meshbus request -> group member responding."""
    samples: list[float] = []
    benchmark.pedantic(  # type: ignore[attr-defined]
        lambda: run(lambda: meshbus_request(server.url, samples)), rounds=3, warmup_rounds=1
    )
    record_throughput(benchmark, ROUNDS)
    record_latency(benchmark, samples)
