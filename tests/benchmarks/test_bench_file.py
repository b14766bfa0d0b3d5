"""file:// throughput and latency, beside a naive file queue in the same run.

The naive baseline writes each message to a temp file and renames it into a folder; a reader
lists the folder (1 ms poll), reads and deletes. "fsync" means the same durability on both
sides: a message's file and its folder are fsynced before its publish counts as done (the
naive queue per message; meshbus once per ``publish_many`` of 256 for the folder). Both run in
one process on one event loop, and both are timed from the first write to the last message
read, without meshbus's connect and close.

Disk timing on shared machines swings several-fold within seconds, so the two are not timed
one after the other for minutes: each round runs the naive queue and meshbus back to back, in
alternating order, and the figure that counts is the median of the per-round ratios (with
their range).

``make bench`` prints the figures; under ``make test`` each runs once as a smoke test.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from conftest import Runner, consume_acking, record_latency, record_throughput

import meshbus

COUNT = 2_048  # a multiple of the 256 batch
BATCH = 256
PAIRS = 8
PAYLOAD = b"x" * 100
POLL_INTERVAL = 0.05  # the file channel's default


@pytest.fixture
def folder() -> Iterator[Path]:
    """A fresh directory on the disk that holds the checkout (not tmpfs, where fsync costs
    nothing; and not /tmp, which on some CI machines creates files ~30x slower)."""
    base = Path(__file__).resolve().parents[2] / ".benchmarks"
    base.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="file-", dir=base) as path:
        yield Path(path)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


async def naive(root: Path, count: int, fsync: bool) -> float:
    """Write temp + rename per message; a reader polls with listdir, reads, deletes.
    Returns the seconds from the first write to the last message read."""
    tmp, queue = root / "tmp", root / "queue"
    tmp.mkdir(parents=True, exist_ok=True)
    queue.mkdir(exist_ok=True)
    tmp_s, queue_s = str(tmp), str(queue)

    async def consume() -> None:
        received = 0
        while received < count:
            names = sorted(os.listdir(queue_s))
            if not names:
                await asyncio.sleep(0.001)
                continue
            for name in names:
                path = os.path.join(queue_s, name)
                with open(path, "rb") as handle:  # noqa: ASYNC230 - the baseline is naive
                    handle.read()
                os.unlink(path)
                received += 1

    start = time.perf_counter()
    consumer = asyncio.create_task(consume())
    for i in range(count):
        temp = os.path.join(tmp_s, f"{i:012d}")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, PAYLOAD)
        if fsync:
            os.fsync(fd)
        os.close(fd)
        os.rename(temp, os.path.join(queue_s, f"{i:012d}"))
        if fsync:
            _fsync_dir(queue_s)
        if i % 64 == 0:
            await asyncio.sleep(0)
    await consumer
    return time.perf_counter() - start


async def one_way(root: Path, count: int, fsync: bool) -> float:
    """publish_many of 256, one group member acking each. Returns the seconds from the first
    publish to the last message acked."""
    os.makedirs(root, exist_ok=True)
    url = f"file://{root}?fsync={str(fsync).lower()}"
    async with meshbus.connect(url) as bus, bus.subscribe("bench.data", group="g") as sub:
        start = time.perf_counter()
        consumer = asyncio.create_task(consume_acking(sub, count))
        chunk = [("bench.data", PAYLOAD)] * BATCH
        for _ in range(count // BATCH):
            await bus.publish_many(chunk)
        await consumer
        return time.perf_counter() - start


SIDES: dict[str, Callable[[Path, int, bool], Awaitable[float]]] = {
    "naive": naive,
    "meshbus": one_way,
}


@pytest.mark.parametrize("fsync", [True, False], ids=["fsync", "nofsync"])
def test_file_one_way_vs_naive(benchmark: object, run: Runner, folder: Path, fsync: bool) -> None:
    """100 B one way, meshbus against the naive queue, alternating within each round."""
    rates: dict[str, list[float]] = {"naive": [], "meshbus": []}
    rounds = 0

    def pair() -> None:
        nonlocal rounds
        order = ["naive", "meshbus"] if rounds % 2 else ["meshbus", "naive"]
        rounds += 1
        for side in order:
            seconds = run(lambda: SIDES[side](folder / side, COUNT, fsync))  # noqa: B023
            rates[side].append(COUNT / seconds)

    pair()  # warm-up: the folders and caches exist before anything counts
    rates = {"naive": [], "meshbus": []}
    benchmark.pedantic(pair, rounds=PAIRS)  # type: ignore[attr-defined]
    ratios = [m / n for m, n in zip(rates["meshbus"], rates["naive"], strict=True)]
    info = benchmark.extra_info  # type: ignore[attr-defined]
    info["msgs_per_s"] = round(statistics.median(rates["meshbus"]))
    info["baseline_msgs_per_s"] = round(statistics.median(rates["naive"]))
    info["ratio"] = round(statistics.median(ratios), 2)
    info["ratio_range"] = f"{min(ratios):.2f}-{max(ratios):.2f}"


@pytest.mark.parametrize("notify", ["inotify", "poll"])
def test_file_latency_one_message(
    benchmark: object, run: Runner, folder: Path, notify: str
) -> None:
    """End-to-end latency of one 100 B message: publish (with fsync) until the waiting
    subscriber has it. Polling (default interval 50 ms) sees a message at its next tick, so
    each publish there waits a random part of the interval first: right after a tick every
    message would wait the whole interval, at random moments half of it on average."""
    samples: list[float] = []
    rounds = 50

    async def session() -> None:
        url = f"file://{folder}?notify={notify}"
        async with meshbus.connect(url) as bus, bus.subscribe("bench.lat", group="g") as sub:
            arrived: asyncio.Queue[float] = asyncio.Queue()

            async def consume() -> None:
                async for msg in sub:
                    arrived.put_nowait(time.perf_counter())
                    await msg.ack()

            consumer = asyncio.create_task(consume())
            await asyncio.sleep(0.05)  # the consumer is waiting before the first publish
            for _ in range(rounds):
                if notify == "poll":
                    await asyncio.sleep(random.uniform(0, POLL_INTERVAL))
                start = time.perf_counter()
                await bus.publish("bench.lat", PAYLOAD)
                samples.append(await arrived.get() - start)
            consumer.cancel()

    run(session)  # warm-up, not counted
    samples.clear()
    benchmark.pedantic(lambda: run(session), rounds=2)  # type: ignore[attr-defined]
    record_throughput(benchmark, rounds)
    record_latency(benchmark, samples)
