"""Python opcodes a tcp:// responder runs per request, by function: a deterministic figure (the
same every run, whatever else the machine does) for telling what a change to the responder
path saves, where timings on a shared machine move by more than the change.

``python tests/benchmarks/request_cost.py [serve|subscriber|bare]`` listens on loopback, says
hello from a plain socket, then feeds one request PUB frame at a time straight into the
listener's connection (as its read callback would) with replies written to a stand-in for the
socket, and counts the opcodes of 1000 requests with ``sys.settrace``. ``bare`` answers from
the connection's frame handlers with nothing in between: the floor of the frame path.
``subscriber`` turns the event loop twice per request for the subscriber's task, which counts
that loop's opcodes too (a real read callback's turn pays one of them).

On one CPU a round trip's p50 follows the instructions both ends run; for counting those (the
C work included), run a peer of ``direct_peer.py`` under ``valgrind --tool=callgrind`` for N
and 3N requests and take the difference.
"""

from __future__ import annotations

import asyncio
import collections
import struct
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import meshbus
from meshbus.channels.direct.frames import (
    DEFAULT_MAX_FRAME,
    FrameDecoder,
    Hello,
    Pub,
    Pubs,
    encode,
    encode_one,
    encode_reply,
)
from meshbus.testing.brokers import free_port
from meshbus.transport import Envelope

_LEN = struct.Struct(">I")
REQUESTS = 1000


class _Socket:
    """Stands in for the connection's transport: counts writes, sends nothing."""

    def __init__(self, real: asyncio.Transport) -> None:
        self.real = real
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.real.get_extra_info(name, default)

    def close(self) -> None:
        self.real.close()


async def _answer(msg: meshbus.Message) -> bytes:
    return msg.data


async def main(mode: str) -> None:
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    async with meshbus.connect(address, listen=address) as bus:
        if mode == "serve":
            held: Any = await bus.serve("bench.rpc", _answer, group="svc")
        else:
            held = await bus.subscribe("bench.rpc", group="svc")

            async def answer() -> None:
                async for msg in held:
                    await msg.respond(msg.data)

            answering = asyncio.create_task(answer())
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"".join(encode(Hello(node="cost", max_frame=DEFAULT_MAX_FRAME, credit=0))))
        (length,) = _LEN.unpack(await reader.readexactly(4))
        (theirs,) = FrameDecoder().feed(_LEN.pack(length) + await reader.readexactly(length))
        assert isinstance(theirs, Hello)
        targets = tuple(i.id for i in theirs.interests if i.pattern == "bench.rpc")
        await asyncio.sleep(0.1)
        listener: Any = bus._listener
        (served,) = [s for s in listener._served if s.conn.peer.node == "cost"]
        conn, wire = served.conn, served.conn.wire
        socket = _Socket(conn.transport)
        conn.transport = socket
        if mode == "bare":

            def bare(frame: Any) -> None:
                if isinstance(frame, Pubs):
                    bare_pub(frame.messages[0])

            def bare_pub(pub: Pub) -> None:
                conn.write(encode_reply(pub.seq, pub.data, {}))

            conn._handler = bare
            wire.on_pub = bare_pub  # a request that is all of its read comes this way
        request = encode_one(1, Envelope("bench.rpc", b"x" * 100, {}, None, "c-1"), targets, True)
        loop = asyncio.get_running_loop()
        me = asyncio.current_task()
        assert me is not None

        def feed() -> None:
            # As from the read callback: no task is current there.
            asyncio.tasks._leave_task(loop, me)
            buffer = wire.get_buffer(-1)
            buffer[: len(request)] = request
            wire.buffer_updated(len(request))
            asyncio.tasks._enter_task(loop, me)

        async def ask() -> None:
            feed()
            if mode == "subscriber":  # the subscriber's task runs on the next turns
                await asyncio.sleep(0)
                await asyncio.sleep(0)

        for _ in range(100):
            await ask()
        counts: collections.Counter[str] = collections.Counter()

        def local(frame: FrameType, event: str, arg: object) -> Callable[..., Any]:
            if event == "opcode":
                code = frame.f_code
                counts[f"{code.co_filename.rsplit('/', 1)[-1]}:{code.co_name}"] += 1
            return local

        def tracer(frame: FrameType, event: str, arg: object) -> Callable[..., Any]:
            frame.f_trace_opcodes = True
            return local

        sys.settrace(tracer)
        for _ in range(REQUESTS):
            await ask()
        sys.settrace(None)
        conn.transport = socket.real
        writer.close()
        assert socket.writes >= REQUESTS + 100
        print(f"{mode}: {sum(counts.values()) / REQUESTS:.0f} opcodes per request")
        for name, count in counts.most_common(30):
            print(f"{count / REQUESTS:8.1f}  {name}")
        if mode != "serve":
            answering.cancel()
        await held.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "serve"))
