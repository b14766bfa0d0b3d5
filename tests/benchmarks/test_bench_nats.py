"""nats:// throughput and request/reply beside raw nats-py in the same run, on one local server.

- broadcast one way (100 B, 16 KiB): meshbus publish -> broadcast subscriber, vs raw nats-py
  core publish -> subscribe, measured interleaved: each benchmark round runs a raw round and a
  meshbus round back to back (alternating which goes first), both timed from the first publish
  to the last message received, so that both see the same load on a shared machine; the
  figure that counts is the median of the per-round ratios (with their range);
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
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import nats
import pytest
from conftest import (
    Runner,
    bench_round_trips,
    consume_acking,
    record_throughput,
    time_requests,
)
from nats.js.api import RetentionPolicy

import meshbus
from meshbus.bus import Outgoing
from meshbus.testing.brokers import NatsServer

pytest.importorskip("meshbus_nats", reason="pip install -e adapters/nats")

SIZES = {"100B": 100, "16KiB": 16 * 1024}
COUNT = {"100B": 40_960, "16KiB": 8_192}
GROUP_COUNT = 10_240
BATCH = 256
PAIRS = 11


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


async def raw_core(url: str, size: int, count: int) -> float:
    """Raw nats-py core publish -> subscribe callback counting. Returns the seconds from the
    first publish to the last message received (connect, subscribe and close not counted)."""
    payload = b"x" * size
    subject = f"{space()}.data"
    pub, con = await nats.connect(url), await nats.connect(url)
    done = asyncio.Event()
    received = 0

    async def on_msg(msg: object) -> None:
        nonlocal received
        received += 1
        if received == count:
            done.set()

    await con.subscribe(subject, cb=on_msg)
    await settled(con)
    start = time.perf_counter()
    for _ in range(count):
        await pub.publish(subject, payload)
    await asyncio.wait_for(done.wait(), 60)
    seconds = time.perf_counter() - start
    await pub.close()
    await con.close()
    return seconds


async def meshbus_broadcast(url: str, size: int, count: int) -> float:
    """meshbus publish each -> broadcast subscriber acking each. Timed as ``raw_core``."""
    payload = b"x" * size
    subject = f"{space()}.data"
    async with (
        meshbus.connect(url) as pub,
        meshbus.connect(url) as con,
        con.subscribe(subject) as sub,
    ):
        start = time.perf_counter()
        consumer = asyncio.create_task(consume_acking(sub, count))
        for _ in range(count):
            await pub.publish(subject, payload)
        await asyncio.wait_for(consumer, 60)
        return time.perf_counter() - start


async def faststream_core(url: str, size: int, count: int) -> float:
    """FastStream publish each -> subscriber handler counting. Timed as ``raw_core``."""
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
    start = time.perf_counter()
    for _ in range(count):
        await pub.publish(payload, subject)
    await asyncio.wait_for(done.wait(), 120)
    seconds = time.perf_counter() - start
    await pub.stop()
    await con.stop()
    return seconds


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


BROADCAST_SIDES: dict[str, Callable[[str, int, int], Awaitable[float]]] = {
    "raw": raw_core,
    "meshbus": meshbus_broadcast,
}


@pytest.mark.parametrize("size", list(SIZES))
def test_nats_broadcast(benchmark: Any, run: Runner, server: NatsServer, size: str) -> None:
    """Broadcast one way, interleaved: a raw nats-py core round and a meshbus round (publish
    each -> subscriber acking each) back to back in each benchmark round, in alternating
    order. ``ratio`` is the median of the per-round ratios, ``ratio_range`` their range."""
    count = COUNT[size]
    rates: dict[str, list[float]] = {side: [] for side in BROADCAST_SIDES}
    rounds = 0

    def pair() -> None:
        nonlocal rounds
        order = list(BROADCAST_SIDES)
        if rounds % 2:
            order.reverse()
        rounds += 1
        for side in order:
            seconds = run(lambda: BROADCAST_SIDES[side](server.url, SIZES[size], count))  # noqa: B023
            rates[side].append(count / seconds)

    pair()  # warm-up (also under --benchmark-disable, where pedantic runs once)
    for values in rates.values():
        values.clear()
    benchmark.pedantic(pair, rounds=PAIRS)
    ratios = [m / r for m, r in zip(rates["meshbus"], rates["raw"], strict=True)]
    info = benchmark.extra_info
    info["msgs_per_s"] = round(statistics.median(rates["meshbus"]))
    info["baseline_msgs_per_s"] = round(statistics.median(rates["raw"]))
    info["ratio"] = round(statistics.median(ratios), 2)
    info["ratio_range"] = [round(min(ratios), 2), round(max(ratios), 2)]


@pytest.mark.parametrize("size", list(SIZES))
def test_nats_faststream_core(benchmark: Any, run: Runner, server: NatsServer, size: str) -> None:
    """FastStream 0.7.8 over NATS core: publish each -> subscriber handler (timed as the
    broadcast rounds are; compare with their ``baseline_msgs_per_s``)."""
    pytest.importorskip("faststream.nats", reason="pip install 'faststream[nats]'")
    rates: list[float] = []

    def once() -> None:
        rates.append(
            COUNT[size] / run(lambda: faststream_core(server.url, SIZES[size], COUNT[size]))
        )

    benchmark.pedantic(once, rounds=5, warmup_rounds=1)
    benchmark.extra_info["msgs_per_s"] = round(statistics.median(rates))


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
    bench_round_trips(benchmark, run, lambda samples: raw_request(server.url, samples), ROUNDS)


def test_nats_request_reply(benchmark: object, run: Runner, server: NatsServer) -> None:
    """meshbus request -> group member responding."""
    bench_round_trips(benchmark, run, lambda samples: meshbus_request(server.url, samples), ROUNDS)
