"""The direct channels on uvloop, whatever ``MESHBUS_LOOP`` says, so that every run of the suite
covers them on both loops: broadcast, a group, pieces written with uvloop's ``writelines``,
request/reply (a responder's and ``bus.serve``'s, whose handlers start in the callback that
delivered their message), TLS, and the listener's receive buffer. Real sockets on 127.0.0.1.

Each test runs its coroutine in an ``asyncio.Runner`` of its own on the uvloop loop of
``meshbus.testing.pytest_plugin`` (uvloop's, closed without hanging on a socket left open)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from test_rcvbuf import accepted_rcvbuf, granted

import meshbus
from meshbus import _aio
from meshbus.channels.direct.connection import Connection
from meshbus.channels.direct.dialer import TcpTransport
from meshbus.fastpath import SAFE
from meshbus.testing._infra import missing
from meshbus.testing.pytest_plugin import LOOP_ENV, loop_choice

T = TypeVar("T")


def on_uvloop(main: Callable[[], Awaitable[T]]) -> T:
    """Run ``main()`` to its end on a new uvloop loop."""
    try:
        choice = loop_choice({LOOP_ENV: "uvloop"})
    except pytest.UsageError as exc:
        missing("uvloop", str(exc))
    assert choice is not None

    async def checked() -> T:
        loop = asyncio.get_running_loop()
        assert any(kind.__module__.startswith("uvloop") for kind in type(loop).__mro__)
        return await main()

    with asyncio.Runner(loop_factory=choice.factory) as runner:
        return runner.run(checked())


def connection_of(bus: meshbus.Bus) -> Connection:
    """The one connection of a bus that dials one peer."""
    (dialler,) = bus._transports.values()
    assert isinstance(dialler, TcpTransport)
    (peer,) = dialler.peers
    assert peer.conn is not None
    return peer.conn


async def take(sub: meshbus.Subscription, count: int) -> list[meshbus.Message]:
    got = []
    async with asyncio.timeout(10):
        async for msg in sub:
            await msg.ack()
            got.append(msg)
            if len(got) == count:
                break
    return got


def test_broadcast_group_and_large_batches() -> None:
    async def main() -> None:
        server = meshbus.connect("memory://uv", listen="tcp://127.0.0.1:0")
        async with (
            server,
            server.subscribe("uv.>") as every,
            server.subscribe("uv.small", group="g") as one,
            server.subscribe("uv.big", group="big") as big,
        ):
            port = server._listener.port  # type: ignore[union-attr]
            async with meshbus.connect(f"tcp://127.0.0.1:{port}") as client:
                conn = connection_of(client)
                assert type(conn.transport).__module__ == "uvloop.loop"
                assert conn._fd is None  # asyncio's writev on the socket: not on uvloop
                vectored = conn._writelines  # uvloop's own vectored write instead
                assert (vectored is not None) is not SAFE
                frames: list[int] = []
                if vectored is not None:

                    def counted(parts: list[bytes]) -> None:
                        frames.append(len(parts))
                        vectored(parts)

                    conn._writelines = counted
                taking = asyncio.gather(take(one, 10), take(big, 256), take(every, 266))
                for n in range(10):
                    await client.publish("uv.small", str(n).encode(), headers={"n": str(n)})
                payloads = [bytes([n]) * (16 * 1024) for n in range(256)]
                await client.publish_many([("uv.big", p) for p in payloads])
                small, large, every_one = await taking
                assert [m.data for m in small] == [str(n).encode() for n in range(10)]
                assert [m.headers["n"] for m in small] == [str(n) for n in range(10)]
                assert [m.data for m in large] == payloads
                assert len(every_one) == 266
                assert (sum(frames) > 256) is not SAFE  # the batch went out in pieces

    on_uvloop(main)


def test_request_reply_and_serve() -> None:
    async def main() -> None:
        server = meshbus.connect("memory://uv-rpc", listen="tcp://127.0.0.1:0")

        async def shout(msg: meshbus.Message) -> bytes:
            # Started from the read callback with the service's worker task made current.
            assert _aio.running_task(asyncio.get_running_loop()) is asyncio.current_task()
            async with asyncio.timeout(5):  # needs the current task
                await asyncio.sleep(0)
            return msg.data.upper()

        async with (
            server,
            server.subscribe("uv.echo", group="svc") as sub,
            server.serve("uv.shout", shout, group="svc"),
        ):

            async def answer() -> None:
                async for msg in sub:
                    await msg.respond(msg.data)

            responder = asyncio.create_task(answer())
            port = server._listener.port  # type: ignore[union-attr]
            async with meshbus.connect(f"tcp://127.0.0.1:{port}") as client:
                for n in range(200):
                    reply = await client.request("uv.echo", str(n).encode(), timeout=5)
                    assert reply.data == str(n).encode()
                replies = await asyncio.gather(
                    *(client.request("uv.shout", b"hey %d" % n, timeout=5) for n in range(50))
                )
                assert [r.data for r in replies] == [b"HEY %d" % n for n in range(50)]
                with pytest.raises(meshbus.errors.NoResponders):
                    await client.request("uv.nobody", b"?", timeout=5)
            responder.cancel()

    on_uvloop(main)


def test_tls(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert, key)
    client_side = ssl.create_default_context(cafile=str(cert))

    async def main() -> None:
        server = meshbus.connect(
            "memory://uv-tls", listen="tcp://127.0.0.1:0", options={"tcp": {"ssl": server_side}}
        )
        async with server, server.subscribe("secure.>", group="g") as sub:
            port = server._listener.port  # type: ignore[union-attr]
            options: dict[str, Any] = {"tcp": {"ssl": client_side}}
            async with meshbus.connect(f"tcp://127.0.0.1:{port}", options=options) as client:
                conn = connection_of(client)
                assert conn.transport.get_extra_info("sslcontext") is client_side
                assert conn._fd is None
                assert conn._writelines is None  # TLS encrypts a copy: pieces are joined
                large = b"z" * (1 << 20)  # larger than the read buffer: one made for it
                await client.publish_many([("secure.small", b"hello"), ("secure.big", large)])
                assert [m.data for m in await take(sub, 2)] == [b"hello", large]

                async def answer() -> None:
                    async for msg in sub:
                        await msg.respond(msg.data.upper())
                        return

                responder = asyncio.create_task(answer())
                reply = await client.request("secure.ask", b"ping", timeout=5)
                await responder
                assert reply.data == b"PING"
            # Without TLS the listener does not talk to it at all.
            with pytest.raises(meshbus.errors.ConnectFailed):
                async with meshbus.connect(f"tcp://127.0.0.1:{port}?connect_timeout=1"):
                    pass

    on_uvloop(main)


def test_the_listeners_receive_buffer() -> None:
    """Set through uvloop's pseudo-socket on the listening socket, inherited by each
    connection it accepts."""
    listening, accepted = on_uvloop(lambda: accepted_rcvbuf("rcvbuf=65536"))
    assert listening == accepted == granted(65536)


def test_task_switching() -> None:
    """uvloop runs asyncio's own tasks: the table ``running_task`` reads is kept, and
    ``enter_task``/``leave_task`` switch the current task, as on asyncio's loop."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        this = asyncio.current_task()
        assert _aio.running_task(loop) is this
        if not _aio.EAGER:
            return  # MESHBUS_SAFE=1: the switch is not used
        other = loop.create_task(asyncio.sleep(0))
        assert this is not None
        _aio.leave_task(loop, this)
        _aio.enter_task(loop, other)
        try:
            assert asyncio.current_task() is other
            assert _aio.running_task(loop) is other
        finally:
            _aio.leave_task(loop, other)
            _aio.enter_task(loop, this)
        assert asyncio.current_task() is this
        await other

    on_uvloop(main)
