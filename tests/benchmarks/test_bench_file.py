"""file:// throughput and latency, beside a naive file queue in the same run.

The naive baseline writes each message to a temp file and renames it into a folder; a reader
lists the folder (1 ms poll), reads and deletes. "fsync" means the same durability on both
sides: the file and its folder are fsynced before a publish counts as done. meshbus batches
with ``publish_many`` (one fsync per file, one per folder per batch of 256).

``make bench`` prints the figures; under ``make test`` each runs once as a smoke test.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Runner, consume_acking, record_latency, record_throughput

import meshbus

COUNT = 5_120  # a multiple of the 256 batch
BATCH = 256
PAYLOAD = b"x" * 100


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


async def naive(root: Path, count: int, fsync: bool) -> None:
    """Write temp + rename per message; a reader polls with listdir, reads, deletes."""
    tmp, queue = root / "tmp", root / "queue"
    tmp.mkdir(exist_ok=True)
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


async def one_way(root: Path, count: int, fsync: bool, notify: str) -> None:
    url = f"file://{root}?fsync={str(fsync).lower()}&notify={notify}"
    async with meshbus.connect(url) as bus, bus.subscribe("bench.data", group="g") as sub:
        consumer = asyncio.create_task(consume_acking(sub, count))
        chunk = [("bench.data", PAYLOAD)] * BATCH
        for _ in range(count // BATCH):
            await bus.publish_many(chunk)
        await consumer


@pytest.mark.parametrize("fsync", [True, False], ids=["fsync", "nofsync"])
def test_naive_file_queue_baseline(
    benchmark: object, run: Runner, folder: Path, fsync: bool
) -> None:
    """The baseline: temp file + rename, listdir/read/delete."""
    benchmark.pedantic(  # type: ignore[attr-defined]
        lambda: run(lambda: naive(folder, COUNT, fsync)), rounds=3, warmup_rounds=1
    )
    record_throughput(benchmark, COUNT)


@pytest.mark.parametrize("fsync", [True, False], ids=["fsync", "nofsync"])
def test_file_one_way_batch256(benchmark: object, run: Runner, folder: Path, fsync: bool) -> None:
    """100 B messages, publish_many of 256, one group member acking each."""
    benchmark.pedantic(  # type: ignore[attr-defined]
        lambda: run(lambda: one_way(folder, COUNT, fsync, "auto")), rounds=3, warmup_rounds=1
    )
    record_throughput(benchmark, COUNT)


@pytest.mark.parametrize("notify", ["inotify", "poll"])
def test_file_latency_one_message(
    benchmark: object, run: Runner, folder: Path, notify: str
) -> None:
    """End-to-end latency of one 100 B message: publish (with fsync) until the waiting
    subscriber has it."""
    samples: list[float] = []
    rounds = 50

    async def session() -> None:
        url = f"file://{folder}?notify={notify}"  # default poll interval: 50 ms
        async with meshbus.connect(url) as bus, bus.subscribe("bench.lat", group="g") as sub:
            arrived: asyncio.Queue[float] = asyncio.Queue()

            async def consume() -> None:
                async for msg in sub:
                    arrived.put_nowait(time.perf_counter())
                    await msg.ack()

            consumer = asyncio.create_task(consume())
            await asyncio.sleep(0.05)  # the consumer is waiting before the first publish
            for _ in range(rounds):
                start = time.perf_counter()
                await bus.publish("bench.lat", PAYLOAD)
                samples.append(await arrived.get() - start)
            consumer.cancel()

    benchmark.pedantic(lambda: run(session), rounds=2, warmup_rounds=1)  # type: ignore[attr-defined]
    record_throughput(benchmark, rounds)
    record_latency(benchmark, samples)
