"""Benchmark helpers: an event loop per benchmark and throughput/latency reporting."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

import meshbus

Runner = Callable[[Callable[[], Awaitable[Any]]], Any]


@pytest.fixture
def run() -> Iterator[Runner]:
    """Run a coroutine function to completion on a private event loop."""
    loop = asyncio.new_event_loop()

    def runner(factory: Callable[[], Awaitable[Any]]) -> Any:
        return loop.run_until_complete(factory())

    try:
        yield runner
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def record_throughput(benchmark: Any, messages: int) -> None:
    """Put msgs/s (from the median round) into the benchmark's extra info."""
    stats = getattr(benchmark, "stats", None)
    if stats is not None and stats.stats.median:
        benchmark.extra_info["msgs_per_s"] = round(messages / stats.stats.median)


def record_latency(benchmark: Any, samples: list[float]) -> None:
    """Put p50/p99 round-trip times (µs) into the benchmark's extra info."""
    if samples:
        ordered = sorted(samples)
        benchmark.extra_info["p50_us"] = round(statistics.median(ordered) * 1e6, 1)
        benchmark.extra_info["p99_us"] = round(ordered[int(len(ordered) * 0.99)] * 1e6, 1)


def bench_round_trips(
    benchmark: Any, run: Runner, session: Callable[[list[float]], Awaitable[Any]], rounds: int
) -> None:
    """Benchmark ``session(samples)``, which makes ``rounds`` round trips and records each
    in ``samples``: three rounds after a warm-up, then requests a second and p50/p99."""
    samples: list[float] = []
    benchmark.pedantic(lambda: run(lambda: session(samples)), rounds=3, warmup_rounds=1)
    record_throughput(benchmark, rounds)
    record_latency(benchmark, samples)


async def consume_acking(sub: AsyncIterator[Any], count: int) -> None:
    """Receive ``count`` messages from ``sub``, acking each: the consumer every one-way
    benchmark uses."""
    received = 0
    async for msg in sub:
        await msg.ack()
        received += 1
        if received == count:
            return


async def time_requests(
    client: meshbus.Bus, server: meshbus.Bus, subject: str, rounds: int, samples: list[float]
) -> None:
    """A group on ``server`` echoes requests on ``subject``; ``client`` sends ``rounds``
    sequential 100 B requests and each round trip lands in ``samples``."""
    async with server.subscribe(subject, group="svc") as sub:

        async def serve() -> None:
            async for msg in sub:
                await msg.respond(msg.data)

        responder = asyncio.create_task(serve())
        payload = b"x" * 100
        try:
            for _ in range(rounds):
                start = time.perf_counter()
                await client.request(subject, payload, timeout=5)
                samples.append(time.perf_counter() - start)
        finally:
            responder.cancel()
