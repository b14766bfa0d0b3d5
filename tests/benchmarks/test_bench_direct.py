"""tcp:// one-way throughput and request/reply beside raw asyncio TCP in the same run.

The baseline is the plain one of issue 3: 4-byte length-prefixed frames, one write per frame,
a reader that parses them. Both sides of both run in this one process and event loop, so the
ratios compare like with like (absolute figures are lower than with two processes).
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time

import pytest
from conftest import Runner, consume_acking, record_latency, record_throughput, time_requests

import meshbus

SIZES = {"100B": 100, "16KiB": 16 * 1024}
COUNT = {"100B": 20_480, "16KiB": 5_120}
BATCH = 256
_LEN = struct.Struct(">I")


async def raw_one_way(size: int, count: int) -> None:
    done = asyncio.Event()

    async def receive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buffer = bytearray()
        seen = 0
        while seen < count:
            buffer += await reader.read(1 << 16)
            at = 0
            while len(buffer) - at >= 4:
                (length,) = _LEN.unpack_from(buffer, at)
                if len(buffer) - at - 4 < length:
                    break
                at += 4 + length
                seen += 1
            del buffer[:at]
        writer.close()
        done.set()

    server = await asyncio.start_server(receive, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    payload = b"x" * size
    head = _LEN.pack(size)
    for _ in range(count):
        writer.write(head + payload)
        await writer.drain()
    await done.wait()
    writer.close()
    server.close()
    await server.wait_closed()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serving(port: int) -> meshbus.Bus:
    """A service as deployed: its channel is the direct one, its subscriptions served on port."""
    return meshbus.connect(f"tcp://127.0.0.1:{port}", listen=f"tcp://127.0.0.1:{port}")


async def meshbus_one_way(size: int, count: int) -> None:
    port = free_port()
    async with (
        serving(port) as server,
        server.subscribe("bench.data", group="g") as sub,
        meshbus.connect(f"tcp://127.0.0.1:{port}") as client,
    ):
        consumer = asyncio.create_task(consume_acking(sub, count))
        chunk = [("bench.data", b"x" * size)] * BATCH
        for _ in range(count // BATCH):
            await client.publish_many(chunk)
        await consumer


@pytest.mark.parametrize("size", list(SIZES))
def test_raw_tcp_baseline(benchmark: object, run: Runner, size: str) -> None:
    """Raw asyncio TCP, one write per 4-byte length-prefixed frame."""
    benchmark.pedantic(  # type: ignore[attr-defined]
        lambda: run(lambda: raw_one_way(SIZES[size], COUNT[size])), rounds=5, warmup_rounds=1
    )
    record_throughput(benchmark, COUNT[size])


@pytest.mark.parametrize("size", list(SIZES))
def test_tcp_one_way(benchmark: object, run: Runner, size: str) -> None:
    """tcp://, publish_many in batches of 256, one group member acking each message."""
    benchmark.pedantic(  # type: ignore[attr-defined]
        lambda: run(lambda: meshbus_one_way(SIZES[size], COUNT[size])), rounds=5, warmup_rounds=1
    )
    record_throughput(benchmark, COUNT[size])


def test_raw_tcp_round_trip(benchmark: object, run: Runner) -> None:
    """Raw TCP ping-pong of 100 B frames."""
    samples: list[float] = []
    rounds = 1_000

    async def session() -> None:
        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while data := await reader.readexactly(4 + 100):
                    writer.write(data)
            except asyncio.IncompleteReadError:
                pass  # the client is done
            finally:
                writer.close()

        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", server.sockets[0].getsockname()[1]
        )
        frame = _LEN.pack(100) + b"x" * 100
        for _ in range(rounds):
            start = time.perf_counter()
            writer.write(frame)
            await reader.readexactly(len(frame))
            samples.append(time.perf_counter() - start)
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

    benchmark.pedantic(lambda: run(session), rounds=3, warmup_rounds=1)  # type: ignore[attr-defined]
    record_latency(benchmark, samples)


def test_tcp_request_reply(benchmark: object, run: Runner) -> None:
    """tcp:// request/reply of 100 B."""
    samples: list[float] = []
    rounds = 1_000

    async def session() -> None:
        port = free_port()
        async with serving(port) as server, meshbus.connect(f"tcp://127.0.0.1:{port}") as client:
            await time_requests(client, server, "bench.rpc", rounds, samples)

    benchmark.pedantic(lambda: run(session), rounds=3, warmup_rounds=1)  # type: ignore[attr-defined]
    record_latency(benchmark, samples)
