"""The receiving process of the direct-channel benchmarks (see test_bench_direct.py).

``python direct_peer.py KIND SIZE COUNT`` listens on a free loopback port, prints it, then:

- ``raw-sink``: reads 4-byte length-prefixed frames; after every COUNT frames prints ``done``;
- ``raw-echo``: writes each frame of SIZE bytes back as it comes;
- ``tcp-sink``: serves a group subscription on ``bench.data`` (its bus listens, as a deployed
  service does) and acks each message; after every COUNT messages prints ``done``;
- ``tcp-serve``: a ``bus.serve`` handler of a group on ``bench.rpc`` that returns each
  request's payload as its reply;
- ``tcp-echo``: the same by a group member iterating its subscription and calling
  ``respond``;
- ``wire-echo``: the least a responder on the direct protocol can do, for telling a tcp://
  requester's cost from a tcp:// responder's: a plain ``asyncio.Protocol`` that answers the
  hello with one group interest on ``bench.rpc`` and each request PUB with a REPLY carrying
  SIZE bytes, straight from ``data_received`` (no subscription, no credit kept).

Each ``done`` line carries the CPU seconds this process has used so far. The process runs
until its stdin closes.

Before it serves, the process calls ``warm_malloc`` (see there); the benchmark process does
the same.
"""

from __future__ import annotations

import asyncio
import struct
import sys
import time

import meshbus
from meshbus.channels.direct.frames import (
    DEFAULT_MAX_FRAME,
    FrameType,
    Hello,
    Interest,
    Pong,
    encode,
    encode_reply,
)
from meshbus.testing.brokers import free_port

_LEN = struct.Struct(">I")
_SEQ = struct.Struct(">Q")


def warm_malloc() -> None:
    """Allocate and free 1 MiB: glibc then serves the 256 KiB ``recv`` of asyncio's plain
    transports from its heap instead of a fresh ``mmap``, ``mremap`` and ``munmap`` each read,
    which otherwise doubles a raw round trip on a warm CPU (a process gets there by chance,
    once it has freed a large block)."""
    block = bytearray(1 << 20)
    del block


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


class _WireEcho(asyncio.Protocol):
    """See ``wire-echo`` in the module docstring."""

    def __init__(self, size: int) -> None:
        self.reply = b"x" * size
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        buffer = self.buffer
        buffer += data
        at = 0
        while len(buffer) - at >= 5:
            (length,) = _LEN.unpack_from(buffer, at)
            if len(buffer) - at - 4 < length:
                break
            kind = buffer[at + 4]
            if kind == FrameType.PUB:  # a request alone in its frame: its seq comes first
                (seq,) = _SEQ.unpack_from(buffer, at + 5)
                self.transport.write(encode_reply(seq, self.reply, {}))
            elif kind == FrameType.HELLO:
                hello = Hello(
                    node="wire-echo",
                    max_frame=DEFAULT_MAX_FRAME,
                    credit=1 << 30,
                    interests=(Interest(1, "bench.rpc", "svc"),),
                )
                self.transport.write(b"".join(encode(hello)))
            elif kind == FrameType.PING:
                (nonce,) = _SEQ.unpack_from(buffer, at + 5)
                self.transport.write(b"".join(encode(Pong(nonce))))
            at += 4 + length
        del buffer[:at]


async def main(kind: str, size: int, count: int) -> None:
    warm_malloc()
    stdin = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    if kind.startswith(("raw", "wire")):
        if kind == "wire-echo":
            server = await loop.create_server(lambda: _WireEcho(size), "127.0.0.1", 0)
        else:
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
        if kind == "tcp-serve":
            async with bus.serve(subject, _answer, group=group):
                print(port, flush=True)
                await stdin.read()
            return
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


async def _answer(msg: meshbus.Message) -> bytes:
    return msg.data


async def _echo(sub: meshbus.Subscription) -> None:
    async for msg in sub:
        await msg.respond(msg.data)


if __name__ == "__main__":
    try:
        asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
    except KeyboardInterrupt:
        pass
