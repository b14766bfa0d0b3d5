"""tcp:// one-way throughput and request/reply beside raw asyncio TCP in the same run.

The baseline is the plain one of issue 3: 4-byte length-prefixed frames, one write (and drain)
per frame, a reader that parses them.

Sender and receiver run in separate processes, for the baseline and for ``tcp://`` alike, as
PERFORMANCE.md measured the issue's ~270k msgs/s: the receiver is ``direct_peer.py``, started
once per benchmark, and this process sends. Both ends in one event loop would measure
something else: there the raw sender never yields (each write goes straight to the socket and
``drain`` returns at once), so it runs its whole loop before the reader parses anything in one
pass, while a real peer's receiver works concurrently on the other core. That made the
one-process baseline (~700k msgs/s) a figure no two services reach.

A round is timed from the first send until the receiving process reports, on its stdout, that it
has the round's last message (tcp:// messages are also acked by the subscriber). The receiver's
CPU per message is recorded beside the sender's. Request/reply times each round trip to an echo
in the other process: a raw frame written back, or a meshbus group member responding.
"""

from __future__ import annotations

import asyncio
import struct
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Runner, record_latency, record_throughput

import meshbus

SIZES = {"100B": 100, "16KiB": 16 * 1024}
COUNT = {"100B": 40_960, "16KiB": 8_192}
BATCH = 256
ROUND_TRIPS = 2_000
_LEN = struct.Struct(">I")
_PEER = Path(__file__).with_name("direct_peer.py")


class Receiver:
    """The other process: started by ``start``, stopped by ``stop``."""

    def __init__(self, kind: str, size: int, count: int) -> None:
        self.args = [kind, str(size), str(count)]
        self.process: asyncio.subprocess.Process | None = None
        self.port = 0
        self.cpu = 0.0  # its CPU seconds at its last report
        self.cpu_spent: list[float] = []

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(_PEER),
            *self.args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert self.process.stdout is not None
        self.port = int(await self.process.stdout.readline())

    async def done(self) -> None:
        """Wait for the receiver's next ``done`` report."""
        assert self.process is not None
        assert self.process.stdout is not None
        line = (await self.process.stdout.readline()).split()
        if not line or line[0] != b"done":
            raise RuntimeError(f"the receiving process stopped: {line!r}")
        cpu = float(line[1])
        self.cpu_spent.append(cpu - self.cpu)
        self.cpu = cpu

    async def stop(self) -> None:
        if self.process is None:
            return
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            async with asyncio.timeout(5):
                await self.process.wait()
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


@pytest.fixture
def receiver(run: Runner) -> Iterator[Callable[[str, int, int], Receiver]]:
    """Start the receiving process of a benchmark; it is stopped afterwards."""
    started: list[Receiver] = []

    def start(kind: str, size: int, count: int) -> Receiver:
        peer = Receiver(kind, size, count)
        started.append(peer)
        run(peer.start)
        return peer

    yield start
    for peer in started:
        run(peer.stop)


def measure(
    benchmark: Any, run: Runner, peer: Receiver, count: int, send: Callable[[], Awaitable[None]]
) -> None:
    """Time rounds of ``send`` until the receiver reports the round complete."""
    spent: list[float] = []

    async def one_round() -> None:
        cpu = time.process_time()
        await send()
        await peer.done()
        spent.append(time.process_time() - cpu)

    benchmark.pedantic(lambda: run(one_round), rounds=5, warmup_rounds=1)
    record_throughput(benchmark, count)
    benchmark.extra_info["sender_cpu_us_per_msg"] = round(min(spent) / count * 1e6, 2)
    benchmark.extra_info["receiver_cpu_us_per_msg"] = round(min(peer.cpu_spent) / count * 1e6, 2)


@pytest.mark.parametrize("size", list(SIZES))
def test_raw_tcp_baseline(benchmark: Any, run: Runner, receiver: Any, size: str) -> None:
    """Raw asyncio TCP, one write + drain per 4-byte length-prefixed frame."""
    peer = receiver("raw-sink", SIZES[size], COUNT[size])
    frame = _LEN.pack(SIZES[size]) + b"x" * SIZES[size]
    _, writer = run(lambda: asyncio.open_connection("127.0.0.1", peer.port))

    async def send() -> None:
        for _ in range(COUNT[size]):
            writer.write(frame)
            await writer.drain()

    measure(benchmark, run, peer, COUNT[size], send)
    writer.close()


@pytest.mark.parametrize("size", list(SIZES))
def test_tcp_one_way(benchmark: Any, run: Runner, receiver: Any, size: str) -> None:
    """tcp://, publish_many in batches of 256, one group member acking each message."""
    peer = receiver("tcp-sink", SIZES[size], COUNT[size])
    client = run(lambda: meshbus.connect(f"tcp://127.0.0.1:{peer.port}").start())
    chunk = [("bench.data", b"x" * SIZES[size])] * BATCH

    async def send() -> None:
        for _ in range(COUNT[size] // BATCH):
            await client.publish_many(chunk)

    try:
        measure(benchmark, run, peer, COUNT[size], send)
    finally:
        run(client.close)


def round_trips(benchmark: Any, run: Runner, ask: Callable[[], Awaitable[object]]) -> None:
    """Time ``ROUND_TRIPS`` sequential calls of ``ask`` per round."""
    samples: list[float] = []

    async def session() -> None:
        for _ in range(ROUND_TRIPS):
            start = time.perf_counter()
            await ask()
            samples.append(time.perf_counter() - start)

    benchmark.pedantic(lambda: run(session), rounds=3, warmup_rounds=1)
    record_latency(benchmark, samples[ROUND_TRIPS:])  # not the warm-up round


def test_raw_tcp_round_trip(benchmark: Any, run: Runner, receiver: Any) -> None:
    """Raw TCP ping-pong of 100 B frames with an echo in the other process."""
    peer = receiver("raw-echo", 100, 0)
    reader, writer = run(lambda: asyncio.open_connection("127.0.0.1", peer.port))
    frame = _LEN.pack(100) + b"x" * 100

    async def ask() -> None:
        writer.write(frame)
        await reader.readexactly(len(frame))

    round_trips(benchmark, run, ask)
    writer.close()


def test_tcp_request_reply(benchmark: Any, run: Runner, receiver: Any) -> None:
    """tcp:// request/reply of 100 B to a group member in the other process."""
    peer = receiver("tcp-echo", 100, 0)
    client = run(lambda: meshbus.connect(f"tcp://127.0.0.1:{peer.port}").start())
    payload = b"x" * 100
    try:
        round_trips(benchmark, run, lambda: client.request("bench.rpc", payload, timeout=5))
    finally:
        run(client.close)
