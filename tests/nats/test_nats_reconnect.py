"""A NATS server killed and restarted under a publish/consume loop (contract point 11)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

import meshbus
from meshbus.testing.brokers import NatsServer
from meshbus.testing.load import ConfirmedLoad, publishes_fail_in_time
from meshbus.testing.pytest_plugin import BrokerFactory


@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_every_confirmed_publish_is_consumed_across_a_restart(
    nats_server_factory: BrokerFactory[NatsServer],
) -> None:
    server = nats_server_factory()
    tag = uuid.uuid4().hex[:10]
    subject, group = f"r{tag}.work", f"g{tag}"
    async with meshbus.connect(server.url) as pub, meshbus.connect(server.url) as con:
        await con.declare_group(subject, group)
        sub = await con.subscribe(subject, group=group)
        async with ConfirmedLoad(pub, sub, subject, publish_timeout=30) as load:
            await asyncio.sleep(0.5)
            await asyncio.to_thread(server.kill)
            await asyncio.sleep(1.0)
            await asyncio.to_thread(server.start)
            await load.published()
            assert load.slowest > 0.5, "no publish waited out the outage"
            assert len(load.confirmed) >= 500
            await load.consumed(within=60)
        await sub.close()


@pytest.mark.asyncio
async def test_publish_during_an_outage_raises_after_its_timeout(
    nats_server_factory: BrokerFactory[NatsServer],
) -> None:
    server = nats_server_factory()
    async with meshbus.connect(server.url) as bus:
        await publishes_fail_in_time(bus, server.kill, warm=("x", "y"))
