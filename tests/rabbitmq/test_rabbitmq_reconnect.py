"""A RabbitMQ node restarted under a publish/consume loop (contract point 11).

The node is stopped (SIGTERM) and started again: with RabbitMQ 3.10 a single-node quorum queue
whose node was SIGKILLed stays without a leader after the restart ("leader not known"; even a
raw aio-pika basic.consume hangs), so a kill -9 test would test the broker, not the adapter.
Abrupt connection loss is covered by the conformance outage (a TCP proxy cutting every
connection).
"""

from __future__ import annotations

import asyncio
import uuid

import aio_pika
import pytest

import meshbus
from meshbus.errors import MeshbusTimeout, TransportError
from meshbus.testing.brokers import RabbitMQServer
from meshbus.testing.load import ConfirmedLoad
from meshbus.testing.pytest_plugin import BrokerFactory
from meshbus_rabbitmq import group_queue


async def consumers_of(url: str, queue: str) -> int:
    """The broker's own count of consumers on ``queue`` (a passive declare)."""
    async with await aio_pika.connect(url) as connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        result = declared.declaration_result
        return int(result.consumer_count or 0)


@pytest.mark.asyncio
@pytest.mark.timeout(240)
async def test_every_confirmed_publish_is_consumed_across_a_restart(
    rabbitmq_server_factory: BrokerFactory[RabbitMQServer],
) -> None:
    server = rabbitmq_server_factory()
    tag = uuid.uuid4().hex[:10]
    subject, group = f"r{tag}.work", f"g{tag}"
    queue = group_queue("mb.", "meshbus", group, subject)
    url = f"{server.url}?reconnect_wait=0.2"
    async with meshbus.connect(url) as pub, meshbus.connect(url) as con:
        await con.declare_group(subject, group)
        held_sub = await con.subscribe(subject, group=group, prefetch=1)
        await pub.publish(subject, -1)
        held = await anext(held_sub)  # never settled: must come again after the restart
        assert (held.json(), held.attempt) == (-1, 1)
        sub = await con.subscribe(subject, group=group)
        assert await consumers_of(server.url, queue) == 2
        async with ConfirmedLoad(pub, sub, subject, publish_timeout=60) as load:
            await asyncio.sleep(0.5)
            await asyncio.to_thread(server.restart)
            await load.published()
            # Both consumers are attached again on the broker, not only the connection.
            assert await consumers_of(server.url, queue) == 2
            # The holding member was restored too (prefetch 1): whatever it holds now, the
            # redelivered -1 included, goes back to the group when it leaves.
            await held_sub.close(timeout=0)
            assert load.slowest > 0.5, "no publish waited out the outage"
            assert len(load.confirmed) >= 500
            await load.consumed(within=60)
            assert await consumers_of(server.url, queue) == 1  # the holder left
            # The unsettled message came again, to the group, after the restart.
            assert -1 in load.received
        await sub.close()


@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_publish_during_an_outage_raises_after_its_timeout(
    rabbitmq_server_factory: BrokerFactory[RabbitMQServer],
) -> None:
    server = rabbitmq_server_factory()
    tag = uuid.uuid4().hex[:10]
    async with meshbus.connect(server.url) as bus:
        await bus.declare_group(f"o{tag}.x", f"g{tag}")
        await bus.publish(f"o{tag}.x", b"before")
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
