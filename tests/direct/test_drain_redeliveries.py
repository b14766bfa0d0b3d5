"""A listener closing hands out what it accepted, redeliveries included: a message nacked with
a delay comes again at once during the drain, and one nacked during the drain is taken again by
a member still open, so a confirmed message is settled (acked or dead-lettered) before the
listener goes, never dropped with its group."""

from __future__ import annotations

import asyncio

import pytest

import meshbus
from meshbus import Message


@pytest.mark.asyncio
async def test_a_delayed_redelivery_is_handled_before_the_listener_closes() -> None:
    server = await meshbus.connect("memory://drain-redeliveries", listen="tcp://127.0.0.1:0")
    port = server._listener.port  # type: ignore[union-attr]
    attempts: list[int] = []
    dead: list[str] = []
    first = asyncio.Event()

    async def flaky(msg: Message) -> None:
        attempts.append(msg.attempt)
        first.set()
        if msg.attempt < 3:
            await msg.nack(delay=3600)  # an hour: only the drain brings it back
            return
        await msg.ack()

    async def doomed(msg: Message) -> None:
        await msg.nack(delay=3600) if msg.attempt < 2 else await msg.reject("gave up")

    async def grave(msg: Message) -> None:
        dead.append(msg.headers["mb-dead-reason"])

    await server.serve("jobs.flaky", flaky, group="w")
    await server.serve("jobs.doomed", doomed, group="w")
    await server.serve("dead-letter.w", grave)
    async with meshbus.connect(f"tcp://127.0.0.1:{port}") as client:
        await client.publish("jobs.flaky", b"1")
        await client.publish("jobs.doomed", b"2")
        async with asyncio.timeout(5):
            await first.wait()
        await asyncio.sleep(0.1)
        await server.close(timeout=10)
    assert attempts == [1, 2, 3]  # redelivered at once by the drain, twice
    assert dead == ["gave up"]
