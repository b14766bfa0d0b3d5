"""kafka:// through outages (contract point 11): connections cut by a proxy, and a Tansu broker
killed and restarted.

Tansu keeps its data in memory only, so a restarted Tansu has no topics, offsets or groups:
the restart test shows that clients reconnect by themselves and new traffic flows, not that
confirmed messages survive (a Kafka broker with a disk keeps them; the proxy test, where the
broker keeps running, shows that nothing confirmed is lost).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest

import meshbus
from meshbus.errors import MeshbusTimeout, TransportError
from meshbus.message import Message
from meshbus.subscription import Subscription
from meshbus.testing.brokers import TansuBroker, free_port
from meshbus.testing.load import ConfirmedLoad
from meshbus.testing.proxy import TcpProxy
from meshbus.testing.pytest_plugin import BrokerFactory

OPTIONS = {
    "kafka": {
        "idempotence": False,
        "session_timeout_ms": 1000,
        "heartbeat_interval_ms": 100,
        "rebalance_grace": 0.5,
    }
}


@contextlib.asynccontextmanager
async def proxied(factory: BrokerFactory[TansuBroker]) -> AsyncIterator[tuple[str, TcpProxy]]:
    """A private broker that advertises a proxy in front of it: every connection goes
    through the proxy. Yields the URL to connect to and the proxy."""
    port = free_port()
    broker = factory(advertised_port=port)
    proxy = await TcpProxy("127.0.0.1", broker.port, port=port).start()
    try:
        yield f"kafka://127.0.0.1:{port}", proxy
    finally:
        await proxy.block()
        await asyncio.sleep(0.2)
        await proxy.close()


def names() -> tuple[str, str]:
    tag = uuid.uuid4().hex[:10]
    return f"r{tag}.work", f"g{tag}"


@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_every_confirmed_publish_is_consumed_across_an_outage(
    kafka_broker_factory: BrokerFactory[TansuBroker],
) -> None:
    subject, group = names()
    async with (
        proxied(kafka_broker_factory) as (url, proxy),
        meshbus.connect(url, options=OPTIONS) as pub,
        meshbus.connect(url, options=OPTIONS) as con,
    ):
        sub = await con.subscribe(subject, group=group)
        async with ConfirmedLoad(pub, sub, subject, publish_timeout=30) as load:
            await asyncio.sleep(0.5)
            await proxy.block()
            await asyncio.sleep(1.5)
            await proxy.unblock()
            await load.published()
            assert load.slowest > 1.0, "no publish waited out the outage"
            assert len(load.confirmed) >= 500
            await load.consumed(within=60)
        await sub.close()


@pytest.mark.asyncio
@pytest.mark.timeout(90)
async def test_a_publish_that_timed_out_is_not_sent_after_the_outage(
    kafka_broker_factory: BrokerFactory[TansuBroker],
) -> None:
    """The producer is fenced when a publish times out: the message it held is dropped, not
    delivered once the broker is back (after later messages)."""
    subject, group = names()
    async with (
        proxied(kafka_broker_factory) as (url, proxy),
        meshbus.connect(url, options=OPTIONS) as pub,
        meshbus.connect(url, options=OPTIONS) as con,
        con.subscribe(subject, group=group) as sub,
    ):
        await pub.publish(subject, "first", key="k")
        await proxy.block()
        loop = asyncio.get_running_loop()
        for lost in (
            pub.publish(subject, "lost", key="k", timeout=0.5),
            pub.publish_many([(subject, "lost too")], timeout=0.5),
        ):
            started = loop.time()
            with pytest.raises((MeshbusTimeout, TransportError)):
                await lost
            assert loop.time() - started < 3
        await proxy.unblock()
        await pub.publish(subject, "next", key="k", timeout=30)
        got = []
        async with asyncio.timeout(30):
            async for msg in sub:
                got.append(msg.json())
                await msg.ack()
                if msg.json() == "next":
                    break
        await asyncio.sleep(1.0)  # anything the old producer still sent would be here
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                async for msg in sub:
                    got.append(msg.json())
                    await msg.ack()
        assert got == ["first", "next"]


@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_clients_reconnect_by_themselves_after_a_broker_restart(
    kafka_broker_factory: BrokerFactory[TansuBroker],
) -> None:
    """Kill Tansu, start it again on the same port (memory storage: empty), and keep
    publishing: a publisher, a group member and a broadcast subscriber carry on by
    themselves: after the restart the group member and the broadcast reader get every new
    message (the reader, waiting past the end of the new log, reads it from its start), and
    request/reply works again."""
    broker = kafka_broker_factory()
    subject, group = names()
    async with (
        meshbus.connect(broker.url, options=OPTIONS) as pub,
        meshbus.connect(broker.url, options=OPTIONS) as con,
        con.subscribe(subject, group=group) as member,
        con.subscribe(subject) as reader,
        con.subscribe(f"{subject}.rpc", group=group) as server,
    ):
        responder = asyncio.create_task(echo(server))
        assert (await pub.request(f"{subject}.rpc", b"ping", timeout=20)).data == b"ping"
        for n in range(5):
            await pub.publish(subject, n)
        for sub in (member, reader):
            got = [m.json() for m in await take(sub, 5)]
            assert got == list(range(5))
        # Let the member commit its acks first: Tansu accepts a commit from the old
        # generation after its restart, and a late commit of offset 5 would make the fresh
        # group start past the first five new messages (a real broker keeps its log and
        # rejects commits of a stale generation).
        await asyncio.sleep(1.0)

        await asyncio.to_thread(broker.kill)
        with pytest.raises((MeshbusTimeout, TransportError)):
            await pub.publish(subject, -1, timeout=0.5)
        await asyncio.to_thread(broker.start)

        await asyncio.sleep(4.0)  # readers find the new, empty log (past their position)
        after = list(range(100, 120))
        for n in after:
            await pub.publish(subject, n, timeout=60)
        for sub in (member, reader):
            assert [m.json() for m in await take(sub, len(after), within=60)] == after

        # The reply reader too was past the end of its new log.
        assert (await pub.request(f"{subject}.rpc", b"pong", timeout=20)).data == b"pong"
        responder.cancel()


async def echo(server: Subscription) -> None:
    async for msg in server:
        await msg.respond(msg.data)


async def take(sub: Subscription, count: int, within: float = 20.0) -> list[Message]:
    got: list[Message] = []
    try:
        async with asyncio.timeout(within):
            while len(got) < count:
                msg = await sub.__anext__()
                await msg.ack()
                got.append(msg)
    except TimeoutError:
        seen = [m.data for m in got]
        raise AssertionError(f"{len(got)} of {count} in {within} s: {seen}") from None
    return got
