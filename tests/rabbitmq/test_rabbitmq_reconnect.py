"""A RabbitMQ node restarted under a publish/consume loop (contract point 11): stopped cleanly
(SIGTERM), and killed (SIGKILL) like a crash.

Before the kill the test flushes the node's dets tables (``RabbitMQServer.flush_metadata``):
RabbitMQ 3.10 autosaves its registry of quorum queue members every 3 minutes, and a node killed
before that loses the registration of quorum queues declared since (they come back without a
leader and even a raw aio-pika ``basic.consume`` hangs). Flushing stands for queues that are
minutes old, as a group's queue usually is; the messages themselves are in Raft's log, written
before the broker confirms them, and are not flushed by the test.
"""

from __future__ import annotations

import asyncio
import uuid

import aio_pika
import pytest

import meshbus
from meshbus.errors import NoResponders
from meshbus.testing.brokers import RabbitMQServer
from meshbus.testing.load import ConfirmedLoad, publishes_fail_in_time
from meshbus.testing.pytest_plugin import BrokerFactory
from meshbus_rabbitmq import group_queue


async def consumers_of(url: str, queue: str) -> int:
    """The broker's own count of consumers on ``queue`` (a passive declare)."""
    async with await aio_pika.connect(url) as connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        result = declared.declaration_result
        return int(result.consumer_count or 0)


def kill_and_start(server: RabbitMQServer) -> None:
    """A crash: SIGKILL, then start on the same data (see the module docstring)."""
    server.flush_metadata()
    server.kill()
    server.start()


@pytest.mark.asyncio
@pytest.mark.timeout(240)
@pytest.mark.parametrize("outage", ["restart", "kill"])
async def test_every_confirmed_publish_is_consumed_across_a_restart(
    rabbitmq_server_factory: BrokerFactory[RabbitMQServer], outage: str
) -> None:
    server = rabbitmq_server_factory()
    down = RabbitMQServer.restart if outage == "restart" else kill_and_start
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
            await asyncio.to_thread(down, server)
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
    async with meshbus.connect(server.url) as bus:
        await publishes_fail_in_time(bus, server.kill)


@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_requests_are_answered_again_after_a_crash(
    rabbitmq_server_factory: BrokerFactory[RabbitMQServer],
) -> None:
    """The request queue and the reply queue are not durable: the reconnect declares both
    again, so a request after the crash reaches the group and its reply comes back. Until the
    responder's own reconnect has restored its request queue, a request raises
    ``NoResponders`` (nobody is there to take it)."""
    server = rabbitmq_server_factory()
    tag = uuid.uuid4().hex[:10]
    subject = f"q{tag}.ask"
    url = f"{server.url}?reconnect_wait=0.2"
    async with (
        meshbus.connect(url) as client,
        meshbus.connect(url) as responder,
        responder.subscribe(subject, group=f"g{tag}") as sub,
    ):

        async def answer() -> None:
            async for msg in sub:
                await msg.respond({"n": msg.json(), "headers": sorted(msg.headers)})

        serving = asyncio.create_task(answer())
        try:
            first = await client.request(subject, 1, timeout=10)
            assert first.json() == {"n": 1, "headers": ["mb-content-type"]}
            await asyncio.to_thread(kill_and_start, server)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 60
            while True:
                try:
                    second = await client.request(subject, 2, timeout=10)
                    break
                except NoResponders:
                    assert loop.time() < deadline, "the responder never came back"
                    await asyncio.sleep(0.2)
            assert second.json() == {"n": 2, "headers": ["mb-content-type"]}
        finally:
            serving.cancel()
