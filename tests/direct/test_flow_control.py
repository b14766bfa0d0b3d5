"""A slow subscriber slows its publishers instead of growing memory: the listener grants credit
only as its subscribers take messages."""

from __future__ import annotations

import asyncio

import pytest

import meshbus

pytestmark = pytest.mark.asyncio

CREDIT = 32


async def test_a_slow_subscriber_bounds_what_waits_for_it() -> None:
    server = meshbus.connect("memory://unused", listen=f"tcp://127.0.0.1:0?credit={CREDIT}")
    async with server:
        port = server._listener.port  # type: ignore[union-attr]
        hub = server._listener._hub  # type: ignore[union-attr]
        handled: list[int] = []
        all_handled = asyncio.Event()
        deepest = 0

        async with server.subscribe("work.>", group="slow") as sub:

            async def slow_consumer() -> None:
                nonlocal deepest
                async for msg in sub:
                    deepest = max(deepest, hub.queued())
                    await asyncio.sleep(0.002)  # the slow part
                    handled.append(msg.json())
                    await msg.ack()
                    if len(handled) == 400:
                        all_handled.set()

            consumer = asyncio.create_task(slow_consumer())
            async with meshbus.connect(f"tcp://127.0.0.1:{port}") as client:
                peer = client._transports[f"tcp://127.0.0.1:{port}"].peers[0]  # type: ignore[attr-defined]
                # Pipelined publishing would run far ahead of a 2 ms consumer without credit.
                for start in range(0, 400, 100):
                    await client.publish_many([("work.item", n) for n in range(start, start + 100)])
                    assert peer._credit <= CREDIT
            async with asyncio.timeout(30):
                await all_handled.wait()
            consumer.cancel()
        assert sorted(handled) == list(range(400))
        # What waited in the listener never exceeded the credit it granted.
        assert deepest <= CREDIT
