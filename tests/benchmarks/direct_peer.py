"""The receiving process of the direct-channel benchmarks (see test_bench_direct.py).

``python direct_peer.py KIND SIZE COUNT`` listens on a free loopback port, prints it, then:

- ``raw-sink``: reads 4-byte length-prefixed frames; after every COUNT frames prints ``done``;
- ``raw-echo``: writes each frame of SIZE bytes back as it comes;
- ``tcp-sink``: serves a group subscription on ``bench.data`` (its bus listens, as a deployed
  service does) and acks each message; after every COUNT messages prints ``done``;
- ``tcp-echo``: serves a group on ``bench.rpc`` that answers each request with its payload.

Each ``done`` line carries the CPU seconds this process has used so far. The process runs
until its stdin closes.
"""

from __future__ import annotations

import asyncio
import struct
import sys
import time

import meshbus
from meshbus.testing.brokers import free_port

_LEN = struct.Struct(">I")


def _report() -> None:
    sys.stdout.write(f"done {time.process_time():.6f}\n")
    sys.stdout.flush()


_writers: set[asyncio.StreamWriter] = set()


async def raw_sink(count: int) -> asyncio.Server:
    async def receive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _writers.add(writer)
        buffer = bytearray()
        seen = 0
        while data := await reader.read(1 << 16):
            buffer += data
            at = 0
            while len(buffer) - at >= 4:
                (length,) = _LEN.unpack_from(buffer, at)
                if len(buffer) - at - 4 < length:
                    break
                at += 4 + length
                seen += 1
                if seen == count:
                    seen = 0
                    _report()
            del buffer[:at]
        writer.close()

    return await asyncio.start_server(receive, "127.0.0.1", 0)


async def raw_echo(size: int) -> asyncio.Server:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _writers.add(writer)
        try:
            while data := await reader.readexactly(4 + size):
                writer.write(data)
        except asyncio.IncompleteReadError:
            pass  # the client is done
        finally:
            writer.close()

    return await asyncio.start_server(echo, "127.0.0.1", 0)


async def main(kind: str, size: int, count: int) -> None:
    stdin = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    if kind.startswith("raw"):
        server = await (raw_sink(count) if kind == "raw-sink" else raw_echo(size))
        print(server.sockets[0].getsockname()[1], flush=True)
        await stdin.read()
        server.close()
        for writer in _writers:  # the handlers end on their own, by end of stream
            writer.close()
        await asyncio.sleep(0.1)
        return
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    async with meshbus.connect(address, listen=address) as bus:
        subject, group = ("bench.data", "g") if kind == "tcp-sink" else ("bench.rpc", "svc")
        async with bus.subscribe(subject, group=group) as sub:
            print(port, flush=True)
            serving = asyncio.ensure_future(_sink(sub, count) if kind == "tcp-sink" else _echo(sub))
            await stdin.read()
            serving.cancel()


async def _sink(sub: meshbus.Subscription, count: int) -> None:
    seen = 0
    async for msg in sub:
        await msg.ack()
        seen += 1
        if seen == count:
            seen = 0
            _report()


async def _echo(sub: meshbus.Subscription) -> None:
    async for msg in sub:
        await msg.respond(msg.data)


if __name__ == "__main__":
    try:
        asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
    except KeyboardInterrupt:
        pass
