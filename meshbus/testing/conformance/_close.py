"""Contract points 10 (close drains) and 11 (reconnect)."""

from __future__ import annotations

import asyncio

import pytest

from meshbus.errors import Closed, MeshbusTimeout, TransportError
from meshbus.testing.harness import Session, contract


class CloseTests:
    """Closing and reconnecting."""

    @contract(10)
    async def test_close_lets_a_handler_finish_and_settle(self, s: Session) -> None:
        """A handler still working when close() begins may settle its message; iteration
        ends; close() waits for it."""
        bus, pub = await s.bus(), await s.bus()
        subject = s.subject("drain")
        handled = asyncio.Event()
        settled: list[bool] = []
        sub = await bus.subscribe(subject, group=s.group("g"))

        async def handler() -> None:
            async for msg in sub:
                handled.set()
                await asyncio.sleep(0.3)
                await msg.ack()
                settled.append(True)

        task = asyncio.create_task(handler())
        await pub.publish(subject, b"x")
        await handled.wait()
        await bus.close(timeout=10)
        assert settled == [True]
        await asyncio.wait_for(task, 5)  # the async-for ended by itself
        assert task.exception() is None

    @contract(10, needs=("durable",))
    async def test_close_gives_unsettled_messages_back(self, s: Session) -> None:
        """Messages still unsettled when the drain timeout ends go back to the group."""
        closing, other = await s.bus(), await s.bus()
        subject, group = s.subject("back"), s.group("g")
        sub = await closing.subscribe(subject, group=group)
        await other.publish(subject, b"held")
        (held,) = await s.take(sub, 1, ack=False)
        await closing.close(timeout=0.2)
        async with other.subscribe(subject, group=group) as again:
            (msg,) = await s.take(again, 1)
            assert (msg.id, msg.attempt) == (held.id, 2)

    @contract(10, needs=("durable",))
    async def test_close_flushes_publishes_in_flight(self, s: Session) -> None:
        """Publishes begun before close() are completed, not dropped."""
        publisher, consumer = await s.bus(), await s.bus()
        subject, group = s.subject("flush"), s.group("g")
        await consumer.declare_group(subject, group)
        batch = asyncio.create_task(publisher.publish_many([(subject, i) for i in range(200)]))
        await asyncio.sleep(0)
        await publisher.close()
        assert len(await batch) == 200
        async with consumer.subscribe(subject, group=group) as sub:
            got = await s.take(sub, 200)
            assert sorted(m.json() for m in got) == list(range(200))

    @contract(10)
    async def test_close_is_idempotent_and_ends_iteration(self, s: Session) -> None:
        """close() twice is fine; subscriptions of a closed bus stop iterating."""
        bus = await s.bus()
        sub = await bus.subscribe(s.subject("end"))
        await bus.close()
        await bus.close()
        with pytest.raises(StopAsyncIteration):
            await sub.__anext__()
        with pytest.raises(Closed):
            await bus.subscribe(s.subject("end"))

    @contract(11, needs=("reconnects",), timeout=180)
    async def test_reconnect_restores_subscriptions(self, s: Session) -> None:
        """After an outage the bus reconnects by itself; its subscriptions work again."""
        bus = await s.bus()
        subject = s.subject("again")
        async with bus.subscribe(subject) as sub:
            await bus.publish(subject, b"before")
            await s.take(sub, 1)
            async with s.harness.outage():
                with pytest.raises((MeshbusTimeout, TransportError)):
                    await bus.publish(subject, b"during", timeout=0.5)
            # Publishes wait out the reconnect; the subscription was restored.
            await bus.publish(subject, b"after", timeout=60)
            (got,) = await s.take(sub, 1, within=60)
            assert got.data == b"after"
