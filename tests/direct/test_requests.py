"""tcp:// request deadlines: one timer for all of a dialler's requests instead of one each.

Each request's deadline is kept in order with the others; answered ones are dropped as new
requests come, so the list stays as short as the requests actually waiting, and the event
loop's timer heap does not fill with cancelled timers. (That every request times out on its
own timeout, a short one after a long one included, is the conformance suite's.)
"""

from __future__ import annotations

import asyncio

import pytest
from oncue import OnCueListener

import meshbus
from meshbus.channels.direct.dialer import TcpTransport
from meshbus.channels.direct.frames import REFUSE_CLOSING
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
            scheduled = getattr(loop, "_scheduled", None)  # asyncio's heap (uvloop has none)
            timers_before = len(scheduled) if scheduled is not None else 0
            for n in range(2000):
                reply = await client.request("rpc.echo", str(n).encode(), timeout=30)
                assert reply.data == str(n).encode()
            waiting = _dialler(client)._deadlines._waiting
            assert len(waiting) <= 1  # the last one, answered, until the next request comes
            # One timer for them all (per-request timers would still be in the heap, due in 30 s).
            if scheduled is not None:
                assert len(scheduled) <= timers_before + 1
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
            # Nor does a request that timed out, or one whose caller gave up, leave its reply
            # waiter with the peer (each would stay until the connection ends).
            (peer,) = _dialler(client).peers
            assert not peer._replies
            given_up = asyncio.ensure_future(client.request("rpc.silent", b"?", timeout=30))
            await asyncio.sleep(0.1)
            assert len(peer._replies) == 1
            given_up.cancel()
            with pytest.raises(asyncio.CancelledError):
                await given_up
            assert not peer._replies
        responder.cancel()


async def test_a_refused_request_is_asked_of_another_member() -> None:
    async with (
        OnCueListener("refuse").running() as refusing,
        meshbus.connect("memory://request-refused", listen="tcp://127.0.0.1:0") as member,
        member.subscribe("job.>", group="svc") as sub,
    ):

        async def answer() -> None:
            async for msg in sub:
                await msg.respond(b"member:" + msg.data)

        responder = asyncio.create_task(answer())
        port = member._listener.port  # type: ignore[union-attr]
        url = f"tcp://127.0.0.1:{refusing.port},127.0.0.1:{port}?connect_timeout=5"
        async with meshbus.connect(url) as client:
            dialler = _dialler(client)
            await asyncio.wait_for(asyncio.gather(*(p.ready.wait() for p in dialler.peers)), 5)
            for n in range(20):
                reply = await client.request("job.n", str(n).encode(), timeout=10)
                assert reply.data == b"member:" + str(n).encode()
        responder.cancel()
    # Round robin asked it some: each was refused there, then answered by the member.
    assert [pub.request for _, pub in refusing.seen] == [True] * len(refusing.seen)
    assert refusing.seen


async def test_a_request_its_only_member_refuses_times_out_instead_of_hanging() -> None:
    # Refused as "closing": owed to whoever takes over there, so it waits for that (none
    # comes here) within its own timeout, and is not asked of the refusing listener again
    # until something changes.
    async with (
        OnCueListener("refuse", code=REFUSE_CLOSING).running() as closing,
        meshbus.connect(f"tcp://127.0.0.1:{closing.port}") as client,
    ):
        with pytest.raises(RequestTimeout):
            await client.request("job.a", b"?", timeout=0.5)
    assert [pub.data for _, pub in closing.seen] == [b"?"]
