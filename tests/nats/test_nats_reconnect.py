"""A NATS server killed and restarted under a publish/consume loop (contract point 11)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

import meshbus
from meshbus.errors import MeshbusTimeout, TransportError
from meshbus.subscription import Subscription
from meshbus.testing.brokers import NatsServer
from meshbus.testing.pytest_plugin import BrokerFactory


@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_every_confirmed_publish_is_consumed_across_a_restart(
    nats_server_factory: BrokerFactory[NatsServer],
) -> None:
    server = nats_server_factory()
    tag = uuid.uuid4().hex[:10]
    subject, group = f"r{tag}.work", f"g{tag}"
    confirmed: set[int] = set()
    received: set[int] = set()
    async with meshbus.connect(server.url) as pub, meshbus.connect(server.url) as con:
        await con.declare_group(subject, group)
        sub = await con.subscribe(subject, group=group)

        produced = False
        all_in = asyncio.Event()

        async def consume(sub: Subscription) -> None:
            async for msg in sub:
                received.add(msg.json())
                await msg.ack()
                if produced and confirmed <= received:
                    all_in.set()

        consumer = asyncio.create_task(consume(sub))

        slowest = 0.0
        loop = asyncio.get_running_loop()

        async def produce() -> None:
            nonlocal slowest
            for i in range(0, 600, 3):
                started = loop.time()
                try:
                    await pub.publish(subject, i, timeout=30)
                    confirmed.add(i)
                    ids = await pub.publish_many([(subject, i + 1), (subject, i + 2)], timeout=30)
                    assert len(ids) == 2
                    confirmed.update((i + 1, i + 2))
                except (MeshbusTimeout, TransportError):
                    pass  # raised: not confirmed, may or may not arrive
                slowest = max(slowest, loop.time() - started)
                await asyncio.sleep(0.005)

        producer = asyncio.create_task(produce())
        await asyncio.sleep(0.5)
        await asyncio.to_thread(server.kill)
        await asyncio.sleep(1.0)
        await asyncio.to_thread(server.start)
        await producer
        assert slowest > 0.5, "no publish waited out the outage"
        assert len(confirmed) >= 500
        produced = True
        if confirmed <= received:
            all_in.set()
        await asyncio.wait_for(all_in.wait(), 60)
        await sub.close()
        consumer.cancel()


@pytest.mark.asyncio
async def test_publish_during_an_outage_raises_after_its_timeout(
    nats_server_factory: BrokerFactory[NatsServer],
) -> None:
    server = nats_server_factory()
    tag = uuid.uuid4().hex[:10]
    async with meshbus.connect(server.url) as bus:
        await bus.declare_group(f"o{tag}.x", f"g{tag}")
        await bus.publish(f"o{tag}.x", b"before")
        await bus.publish(f"o{tag}.y", b"before")
        await asyncio.to_thread(server.kill)
        await asyncio.sleep(0.5)
        loop = asyncio.get_running_loop()
        for subject in (f"o{tag}.x", f"o{tag}.y"):
            started = loop.time()
            with pytest.raises((MeshbusTimeout, TransportError)):
                await bus.publish(subject, b"during", timeout=0.5)
            assert loop.time() - started < 3
        with pytest.raises((MeshbusTimeout, TransportError)):
            await bus.request(f"o{tag}.x", b"?", timeout=0.5)
        await bus.close(timeout=0.5)
