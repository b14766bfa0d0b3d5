"""tcp:// request deadlines: one timer for all of a dialler's requests instead of one each.

Each request's deadline is kept in order with the others; answered ones are dropped as new
requests come, so the list stays as short as the requests actually waiting, and the event
loop's timer heap does not fill with cancelled timers. (That every request times out on its
own timeout, a short one after a long one included, is the conformance suite's.)
"""

from __future__ import annotations

import asyncio

import pytest

import meshbus
from meshbus.channels.direct.dialer import TcpTransport
from meshbus.errors import RequestTimeout

pytestmark = pytest.mark.asyncio


def _dialler(bus: meshbus.Bus) -> TcpTransport:
    (transport,) = bus._transports.values()
    assert isinstance(transport, TcpTransport)
    return transport


async def test_answered_requests_leave_neither_deadlines_nor_timers_behind() -> None:
    server = meshbus.connect("memory://deadlines", listen="tcp://127.0.0.1:0")
    async with server, server.subscribe("rpc.echo", group="svc") as sub:

        async def answer() -> None:
            async for msg in sub:
                await msg.respond(msg.data)

        responder = asyncio.create_task(answer())
        port = server._listener.port  # type: ignore[union-attr]
        async with meshbus.connect(f"tcp://127.0.0.1:{port}") as client:
            loop = asyncio.get_running_loop()
            timers_before = len(loop._scheduled)  # type: ignore[attr-defined]
            for n in range(2000):
                reply = await client.request("rpc.echo", str(n).encode(), timeout=30)
                assert reply.data == str(n).encode()
            waiting = _dialler(client)._deadlines._waiting
            assert len(waiting) <= 1  # the last one, answered, until the next request comes
            # One timer for them all (per-request timers would still be in the heap, due in 30 s).
            assert len(loop._scheduled) <= timers_before + 1  # type: ignore[attr-defined]
        responder.cancel()


async def test_a_request_left_unanswered_times_out_among_answered_ones() -> None:
    server = meshbus.connect("memory://deadlines-mixed", listen="tcp://127.0.0.1:0")
    async with server, server.subscribe("rpc.>", group="svc") as sub:

        async def answer_all_but_silent() -> None:
            async for msg in sub:
                if msg.subject == "rpc.silent":
                    await msg.ack()  # taken, never answered
                else:
                    await msg.respond(b"ok")

        responder = asyncio.create_task(answer_all_but_silent())
        port = server._listener.port  # type: ignore[union-attr]
        async with meshbus.connect(f"tcp://127.0.0.1:{port}") as client:
            silent = asyncio.ensure_future(client.request("rpc.silent", b"?", timeout=0.5))
            for _ in range(200):  # answered requests with longer timeouts go by meanwhile
                await client.request("rpc.echo", b"!", timeout=30)
            with pytest.raises(RequestTimeout):
                await silent
            assert not _dialler(client)._deadlines._waiting or all(
                reply.done() for _, reply in _dialler(client)._deadlines._waiting
            )
        responder.cancel()
