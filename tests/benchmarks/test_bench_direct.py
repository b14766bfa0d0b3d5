"""tcp:// one-way throughput and request/reply beside raw asyncio TCP in the same run.

The baseline is the plain one of issue 3: 4-byte length-prefixed frames, one write (and drain)
per frame, a reader that parses them.

Sender and receiver run in separate processes, for the baseline and for ``tcp://`` alike, as
PERFORMANCE.md measured the issue's ~270k msgs/s: each receiver is a ``direct_peer.py`` process,
and this process sends. Both ends in one event loop would measure something else: there the raw
sender never yields (each write goes straight to the socket and ``drain`` returns at once), so
it runs its whole loop before the reader parses anything, in one pass, while a real peer's
receiver works at the same time on the other core. That made the one-process baseline
(~700k msgs/s) a figure no two services reach.

The baseline and ``tcp://`` are measured interleaved — a raw round, then a ``tcp://`` round,
in each benchmark round — so that both see the same load on a shared machine, whose other work
moves absolute figures by 2x within a minute. A throughput round is timed from the first send
until the receiving process reports, on its stdout, that it has the round's last message
(``tcp://`` messages are also acked by the subscriber); the CPU per message of both processes
is recorded too. Round trips are timed in alternating blocks of 100 to an echo in the other
process: a raw frame written back, or a ``tcp://`` group member responding. ``msgs_per_s`` and
``p50_us`` are tcp://'s, ``baseline_*`` the raw figures, ``ratio`` the first over the second.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import statistics
import struct
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Runner
from direct_peer import warm_malloc

import meshbus
from meshbus.channels.direct.frames import (
    DEFAULT_MAX_FRAME,
    FrameDecoder,
    FrameType,
    Hello,
    encode,
    encode_one,
    encode_reply,
)
from meshbus.transport import Envelope

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


Sender = tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]
"""Sends one round; closes the sender."""


def raw_sender(run: Runner, peer: Receiver, size: int, count: int) -> Sender:
    """Raw asyncio TCP, one write + drain per 4-byte length-prefixed frame."""
    frame = _LEN.pack(size) + b"x" * size
    _, writer = run(lambda: asyncio.open_connection("127.0.0.1", peer.port))

    async def send() -> None:
        for _ in range(count):
            writer.write(frame)
            await writer.drain()

    async def close() -> None:
        writer.close()
        await writer.wait_closed()

    return send, close


def tcp_sender(run: Runner, peer: Receiver, size: int, count: int) -> Sender:
    """tcp://, publish_many in batches of 256, two batches in flight (the next one goes while
    the last frames of the one before wait for their ACCEPT), one group member acking each
    message."""
    client = run(lambda: meshbus.connect(f"tcp://127.0.0.1:{peer.port}").start())
    chunk = [("bench.data", b"x" * size)] * BATCH

    async def send() -> None:
        earlier: asyncio.Task[list[str]] | None = None
        for _ in range(count // BATCH):
            batch = asyncio.ensure_future(client.publish_many(chunk))
            if earlier is not None:
                await earlier
            earlier = batch
        if earlier is not None:
            await earlier

    return send, client.close


@pytest.mark.parametrize("size", list(SIZES))
def test_one_way(benchmark: Any, run: Runner, receiver: Any, size: str) -> None:
    """One way, interleaved: raw asyncio TCP (the baseline), then tcp:// publish_many in
    batches of 256 (two in flight) into a group member acking each message."""
    count = COUNT[size]
    paths = {path: receiver(f"{path}-sink", SIZES[size], count) for path in ("raw", "tcp")}
    senders = {
        "raw": raw_sender(run, paths["raw"], SIZES[size], count),
        "tcp": tcp_sender(run, paths["tcp"], SIZES[size], count),
    }
    seconds: dict[str, list[float]] = {"raw": [], "tcp": []}
    cpu: dict[str, list[float]] = {"raw": [], "tcp": []}

    async def pair() -> None:
        for path, (send, _) in senders.items():
            start, used = time.perf_counter(), time.process_time()
            await send()
            await paths[path].done()
            seconds[path].append(time.perf_counter() - start)
            cpu[path].append(time.process_time() - used)

    try:
        run(pair)  # warm-up (also under --benchmark-disable, where pedantic runs once)
        for record in (*seconds.values(), *cpu.values(), *(p.cpu_spent for p in paths.values())):
            record.clear()
        benchmark.pedantic(lambda: run(pair), rounds=7)
    finally:
        for _, close in senders.values():
            run(close)
    rate = {path: count / statistics.median(seconds[path]) for path in seconds}
    ratios = [raw / tcp for raw, tcp in zip(seconds["raw"], seconds["tcp"], strict=True)]
    info = benchmark.extra_info
    info["msgs_per_s"] = round(rate["tcp"])
    info["baseline_msgs_per_s"] = round(rate["raw"])
    info["ratio"] = round(rate["tcp"] / rate["raw"], 2)
    info["ratio_range"] = [round(min(ratios), 2), round(max(ratios), 2)]
    for path in ("raw", "tcp"):
        info[f"{path}_cpu_us_per_msg"] = [  # sender, receiver
            round(min(cpu[path]) / count * 1e6, 2),
            round(min(paths[path].cpu_spent) / count * 1e6, 2),
        ]


LAYOUTS = ("one-core", "two-cores")


@contextlib.contextmanager
def _pinned(layout: str, peers: list[Receiver]) -> Iterator[None]:
    """Run this process on one CPU and the peers on the same CPU (``one-core``) or on
    another one (``two-cores``); give this process its CPUs back afterwards."""
    cpus = sorted(os.sched_getaffinity(0))
    if layout == "two-cores" and len(cpus) < 2:
        pytest.skip("the two-cores layout needs two CPUs")
    here = cpus[0]
    there = here if layout == "one-core" else cpus[1]
    os.sched_setaffinity(0, {here})
    try:
        for peer in peers:
            assert peer.process is not None
            os.sched_setaffinity(peer.process.pid, {there})
        yield
    finally:
        os.sched_setaffinity(0, cpus)


class WireRequester:
    """The least a requester on the direct protocol can do (the counterpart of
    ``direct_peer.py wire-echo``): a hello, then each request as one PUB frame written and its
    REPLY read back with one ``readexactly``, a CREDIT that comes first skipped."""

    def __init__(self, port: int, size: int) -> None:
        self.port = port
        self.payload = b"x" * size
        self.reply_size = len(encode_reply(0, self.payload, {}))
        self.seqs = itertools.count(1)
        self.ids = itertools.count(1)
        self.targets: tuple[int, ...] = ()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def start(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        hello = Hello(node="wire-requester", max_frame=DEFAULT_MAX_FRAME, credit=0)
        self.writer.write(b"".join(encode(hello)))
        (length,) = _LEN.unpack(await self.reader.readexactly(4))
        (theirs,) = FrameDecoder().feed(_LEN.pack(length) + await self.reader.readexactly(length))
        assert isinstance(theirs, Hello)
        self.targets = tuple(i.id for i in theirs.interests if i.pattern == "bench.rpc")

    async def request(self) -> None:
        assert self.reader is not None
        assert self.writer is not None
        envelope = Envelope("bench.rpc", self.payload, {}, None, f"wire-{next(self.ids):x}")
        self.writer.write(encode_one(next(self.seqs), envelope, self.targets, True))
        data = await self.reader.readexactly(self.reply_size)
        while data[4] == FrameType.CREDIT:  # 9 bytes, granted as requests are taken
            data = data[9:] + await self.reader.readexactly(9)
        assert data[4] == FrameType.REPLY

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


@pytest.mark.parametrize("layout", LAYOUTS)
def test_round_trip(benchmark: Any, run: Runner, receiver: Any, layout: str) -> None:
    """100 B round trips to the other process, in alternating blocks of 100: a raw frame
    echoed back (the baseline), and a tcp:// request answered by a ``bus.serve`` handler of
    a group (``tcp-serve``), the way to answer requests.

    Two more paths split tcp://'s cost between its two sides: a tcp:// requester answered by
    the least a responder on the direct protocol can do (``wire-echo``), and the least a
    requester can do (``WireRequester``) answered by a tcp:// ``bus.serve`` handler. One more
    has the requests answered by a group member iterating its subscription and calling
    ``respond`` (``tcp-echo``). ``ratio`` is tcp://'s p50 over the raw one;
    ``requester_ratio``, ``responder_ratio`` and ``subscriber_ratio`` are those of the other
    paths.

    All paths get the same CPU placement: this process on one CPU and every peer on the same
    one (``one-core``) or on the other (``two-cores``). Left to the scheduler, the placement
    decided the ratio: a raw echo that shares the client's CPU answers in ~30-50 µs, one on
    the other CPU (woken from idle) in ~80-150 µs, and the scheduler often put the two peers
    on different sides. On one CPU a round trip costs the CPU time of both ends, so the
    figure is a measure of CPU; on two it is mostly the wake-up of an idle CPU."""
    warm_malloc()  # as the peers do
    raw_peer, tcp_peer = receiver("raw-echo", 100, 0), receiver("tcp-serve", 100, 0)
    wire_peer, wire_tcp_peer = receiver("wire-echo", 100, 0), receiver("tcp-serve", 100, 0)
    loop_peer = receiver("tcp-echo", 100, 0)
    benchmark.extra_info["layout"] = layout
    with _pinned(layout, [raw_peer, tcp_peer, wire_peer, wire_tcp_peer, loop_peer]):
        reader, writer = run(lambda: asyncio.open_connection("127.0.0.1", raw_peer.port))
        client = run(lambda: meshbus.connect(f"tcp://127.0.0.1:{tcp_peer.port}").start())
        to_loop = run(lambda: meshbus.connect(f"tcp://127.0.0.1:{loop_peer.port}").start())
        to_wire = run(lambda: meshbus.connect(f"tcp://127.0.0.1:{wire_peer.port}").start())
        requester = WireRequester(wire_tcp_peer.port, 100)
        run(requester.start)
        frame = _LEN.pack(100) + b"x" * 100
        payload = b"x" * 100

        async def raw() -> None:
            writer.write(frame)
            await reader.readexactly(len(frame))

        async def tcp() -> None:
            await client.request("bench.rpc", payload, timeout=5)

        async def tcp_to_loop() -> None:
            await to_loop.request("bench.rpc", payload, timeout=5)

        async def tcp_to_wire() -> None:
            await to_wire.request("bench.rpc", payload, timeout=5)

        paths: dict[str, Callable[[], Awaitable[None]]] = {
            "raw": raw,
            "tcp": tcp,
            "requester": tcp_to_wire,
            "responder": requester.request,
            "subscriber": tcp_to_loop,
        }
        samples: dict[str, list[float]] = {path: [] for path in paths}

        async def session() -> None:
            for _ in range(ROUND_TRIPS // 100):
                for path, ask in paths.items():
                    for _ in range(100):
                        start = time.perf_counter()
                        await ask()
                        samples[path].append(time.perf_counter() - start)

        try:
            run(session)  # warm-up (also under --benchmark-disable, where pedantic runs once)
            for values in samples.values():
                values.clear()
            benchmark.pedantic(lambda: run(session), rounds=3)
        finally:
            writer.close()
            requester.close()
            run(client.close)
            run(to_wire.close)
            run(to_loop.close)
    p50 = {path: statistics.median(values) * 1e6 for path, values in samples.items()}
    info = benchmark.extra_info
    info["p50_us"] = round(p50["tcp"], 1)
    info["p99_us"] = round(sorted(samples["tcp"])[int(len(samples["tcp"]) * 0.99)] * 1e6, 1)
    info["baseline_p50_us"] = round(p50["raw"], 1)
    info["ratio"] = round(p50["tcp"] / p50["raw"], 2)
    for side in ("requester", "responder", "subscriber"):
        info[f"{side}_p50_us"] = round(p50[side], 1)
        info[f"{side}_ratio"] = round(p50[side] / p50["raw"], 2)
