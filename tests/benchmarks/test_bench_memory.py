"""memory:// throughput and request/reply, beside a raw asyncio.Queue baseline in the same run.

``make bench`` prints the figures; under ``make test`` each runs once as a smoke test.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from conftest import (
    Runner,
    bench_round_trips,
    consume_acking,
    record_throughput,
    time_requests,
)

import meshbus

SIZES = {"100B": 100, "16KiB": 16 * 1024}
COUNT = {"100B": 20_480, "16KiB": 5_120}  # multiples of the 256 batch


def url() -> str:
    return f"memory://bench-{uuid.uuid4().hex}"


async def one_way(size: int, count: int, group: str | None, batch: int) -> None:
    payload = b"x" * size
    async with meshbus.connect(url()) as bus, bus.subscribe("bench.data", group=group) as sub:
        consumer = asyncio.create_task(consume_acking(sub, count))
        if batch > 1:
            chunk = [("bench.data", payload)] * batch
            for _ in range(count // batch):
                await bus.publish_many(chunk)
        else:
            for _ in range(count):
                await bus.publish("bench.data", payload)
        await consumer


async def raw_queue(size: int, count: int) -> None:
    payload = b"x" * size
    queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=10_000)

    async def consume() -> None:
        for _ in range(count):
            await queue.get()

    consumer = asyncio.create_task(consume())
    for _ in range(count):
        await queue.put(payload)
    await consumer


@pytest.mark.parametrize("size", list(SIZES))
def test_raw_asyncio_queue_baseline(benchmark: object, run: Runner, size: str) -> None:
    """The floor: one asyncio.Queue, no framework."""
    benchmark.pedantic(  # type: ignore[attr-defined]
        lambda: run(lambda: raw_queue(SIZES[size], COUNT[size])), rounds=5, warmup_rounds=1
    )
    record_throughput(benchmark, COUNT[size])


@pytest.mark.parametrize("mode", ["broadcast", "group", "group-batch256"])
@pytest.mark.parametrize("size", list(SIZES))
def test_memory_one_way(benchmark: object, run: Runner, size: str, mode: str) -> None:
    """One publisher, one subscriber acking each message."""
    group = None if mode == "broadcast" else "g"
    batch = 256 if mode.endswith("batch256") else 1
    benchmark.pedantic(  # type: ignore[attr-defined]
        lambda: run(lambda: one_way(SIZES[size], COUNT[size], group, batch)),
        rounds=5,
        warmup_rounds=1,
    )
    record_throughput(benchmark, COUNT[size])


def test_memory_request_reply(benchmark: object, run: Runner) -> None:
    """Sequential request/reply round trips of 100 B."""
    rounds = 1_000

    async def session(samples: list[float]) -> None:
        async with meshbus.connect(url()) as bus:
            await time_requests(bus, bus, "bench.rpc", rounds, samples)

    bench_round_trips(benchmark, run, session, rounds)
