"""nats:// beyond the shared contract: bad input, limits, naming, delivery limits, dedupe."""

from __future__ import annotations

import asyncio
import time
import uuid

import nats
import pytest

import meshbus
from meshbus.errors import ConnectFailed, InvalidURL, NotSupported, PayloadTooLarge
from meshbus.headers import ATTEMPT, DEAD_GROUP, DEAD_REASON, dead_letter_subject
from meshbus.testing.brokers import NatsServer, free_port
from meshbus.transport import Envelope
from meshbus_nats import NatsTransport, consumer_name
from meshbus_nats._transport import HEADROOM


def names() -> tuple[str, str]:
    """A subject space and a group unique to the test."""
    tag = uuid.uuid4().hex[:10]
    return f"n{tag}", f"g{tag}"


@pytest.mark.asyncio
async def test_unreachable_server_fails_fast_with_connect_failed() -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(ConnectFailed, match="cannot connect to NATS"):
        await meshbus.connect(url)
    assert time.monotonic() - started < 5


def test_bad_options_are_invalid_urls() -> None:
    for url in [
        "nats://",
        "nats://h:4222?max_deliver=0",
        "nats://h:4222?ack_wait=x",
        "nats://h:4222?nonsense=1",
        "nats://h:4222?stream_prefix=a.b",
    ]:
        with pytest.raises(InvalidURL):
            NatsTransport(url)


@pytest.mark.asyncio
async def test_payload_limit_comes_from_the_server(
    nats_server_factory: type[NatsServer],
) -> None:
    server = nats_server_factory(max_payload=4096)
    space, group = names()
    async with meshbus.connect(server.url) as bus:
        limit = bus.capabilities(f"{space}.x").max_payload
        assert limit == 4096 - HEADROOM
        async with bus.subscribe(f"{space}.x", group=group) as sub:
            with pytest.raises(PayloadTooLarge):
                await bus.publish(f"{space}.x", b"\0" * (limit + 1))
            # Headers count against the server's limit too: refused before sending.
            with pytest.raises(PayloadTooLarge):
                await bus.publish(f"{space}.x", b"\0" * limit, headers={"h": "v" * 512})
            await bus.publish(f"{space}.x", b"\1" * limit, key="k", headers={"h": "v"})
            got = await sub.__anext__()
            assert got.data == b"\1" * limit
            await got.ack()
        # The connection survived all of it.
        assert bus.capabilities(f"{space}.x").max_payload == limit


@pytest.mark.asyncio
async def test_streams_and_consumers_are_named_by_space_and_group(nats_server: NatsServer) -> None:
    space, group = names()
    pattern = f"{space}.orders.>"
    async with meshbus.connect(nats_server.url + "?stream_prefix=APP_") as bus:
        await bus.declare_group(pattern, group)
        with pytest.raises(NotSupported):
            await bus.declare_group("*.orders", group)
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(f"APP_{space}")
        assert set(info.config.subjects or []) == {space, f"{space}.>"}
        consumer = await js.consumer_info(f"APP_{space}", consumer_name(group, pattern))
        assert consumer.config.filter_subject == pattern
    finally:
        await nc.close()


@pytest.mark.asyncio
async def test_max_deliver_dead_letters_a_poison_message(nats_server: NatsServer) -> None:
    space, group = names()
    subject = f"{space}.job"
    async with (
        meshbus.connect(nats_server.url + "?max_deliver=2") as bus,
        bus.subscribe(dead_letter_subject(group), group=f"{group}-ops") as dead,
        bus.subscribe(subject, group=group) as sub,
    ):
        await bus.publish(subject, b"poison")
        for attempt in (1, 2):
            msg = await asyncio.wait_for(sub.__anext__(), 10)
            assert msg.attempt == attempt
            await msg.nack()
        corpse = await asyncio.wait_for(dead.__anext__(), 10)
        await corpse.ack()
        assert corpse.data == b"poison"
        assert corpse.headers[ATTEMPT] == "2"
        assert corpse.headers[DEAD_GROUP] == group
        assert "max_deliver" in corpse.headers[DEAD_REASON]
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(sub.__anext__(), 0.5)


@pytest.mark.asyncio
async def test_a_retried_publish_is_stored_once(nats_server: NatsServer) -> None:
    space, group = names()
    subject = f"{space}.once"
    transport = NatsTransport(nats_server.url)
    await transport.start()
    try:
        await transport.declare_group(subject, group)
        envelope = Envelope(subject, b"x", {}, None, "same-id-" + space)
        await transport.publish(envelope, 5)
        await transport.publish(envelope, 5)  # a retry after a lost PubAck
        await transport.publish_many([envelope], 5)
        sub = await transport.subscribe(subject, group, 10)
        msg = await asyncio.wait_for(sub.__anext__(), 10)
        await msg.ack()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(sub.__anext__(), 0.5)
    finally:
        await transport.close(1)


@pytest.mark.asyncio
async def test_in_progress_holds_off_redelivery(nats_server: NatsServer) -> None:
    space, group = names()
    subject = f"{space}.slow"
    async with (
        meshbus.connect(nats_server.url + "?ack_wait=1") as bus,
        bus.subscribe(subject, group=group) as sub,
    ):
        await bus.publish(subject, b"long job")
        msg = await asyncio.wait_for(sub.__anext__(), 10)
        for _ in range(5):  # 2.5 s, well past ack_wait
            await asyncio.sleep(0.5)
            await msg.in_progress()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(sub.__anext__(), 0.2)
        await msg.ack()
        assert msg.attempt == 1
