"""``Message.respond`` with bytes, from a subscription loop, over memory:// and over a real
tcp:// connection: a member of an in-process hub answers and acks at once (``answer``); what it
cannot answer that way takes the long way, with the same outcome and errors."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

import meshbus
from meshbus.errors import AlreadySettled, PayloadTooLarge


@contextlib.asynccontextmanager
async def requester_and_responder(kind: str) -> AsyncIterator[tuple[meshbus.Bus, meshbus.Bus]]:
    if kind == "memory":
        async with meshbus.connect("memory://respond-test?max_payload=1024") as bus:
            yield bus, bus
        return
    server = meshbus.connect("memory://unused", listen="tcp://127.0.0.1:0?max_payload=1024")
    async with server:
        port = server._listener.port  # type: ignore[union-attr]
        async with meshbus.connect(f"tcp://127.0.0.1:{port}") as client:
            yield client, server


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["memory", "tcp"])
async def test_a_bytes_response_answers_and_settles(kind: str) -> None:
    async with requester_and_responder(kind) as (client, server):
        seen: list[meshbus.Message] = []
        async with server.subscribe("svc.echo", group="svc") as sub:

            async def loop() -> None:
                async for msg in sub:
                    await msg.respond(b"re:" + msg.data)
                    seen.append(msg)

            task = asyncio.create_task(loop())
            replies = [await client.request("svc.echo", b"x%d" % n, timeout=5) for n in range(3)]
            task.cancel()
        assert [r.data for r in replies] == [b"re:x0", b"re:x1", b"re:x2"]
        with pytest.raises(AlreadySettled):
            await seen[0].ack()  # responding acked it


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["memory", "tcp"])
async def test_an_oversized_bytes_response_raises_and_settles_nothing(kind: str) -> None:
    async with (
        requester_and_responder(kind) as (client, server),
        server.subscribe("svc.big", group="svc") as sub,
    ):
        request = asyncio.create_task(client.request("svc.big", b"?", timeout=5))
        msg = await anext(aiter(sub))
        with pytest.raises(PayloadTooLarge):
            await msg.respond(b"y" * 2048)
        await msg.respond(b"small after all")  # still a request nobody has answered
        assert (await request).data == b"small after all"
