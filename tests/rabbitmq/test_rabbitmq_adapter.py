"""amqp:// beyond the shared contract: options, naming, first connect, delivery limit, where
requests travel."""

from __future__ import annotations

import asyncio
import time
import uuid

import aio_pika
import pytest

import meshbus
from meshbus.errors import ConnectFailed, InvalidURL, NoResponders
from meshbus.headers import ATTEMPT, DEAD_GROUP, DEAD_REASON, dead_letter_subject
from meshbus.testing.brokers import RabbitMQServer, free_port
from meshbus_rabbitmq import RabbitTransport, binding_key, group_queue


def test_binding_keys_match_meshbus_wildcards() -> None:
    assert binding_key("a.*.c") == "a.*.c"
    assert binding_key("a.>") == "a.*.#"
    assert binding_key(">") == "*.#"


def test_group_queue_names_stay_within_255_bytes() -> None:
    assert group_queue("mb.", "meshbus", "g", "a.b") == "mb.meshbus.g.g.a.b"
    long = group_queue("mb.", "meshbus", "g", "x" * 255)
    assert len(long) <= 255
    assert long != group_queue("mb.", "meshbus", "g", "y" * 255)


def test_group_queue_names_on_wildcards_are_valid_amqp_names() -> None:
    """Clients accept only [A-Za-z0-9-_.:@#,/+ ] in queue names: ``*`` and ``>`` are
    respelled ``+`` and ``#`` (never in a token, so distinct patterns keep distinct queues)."""
    import re

    valid = re.compile(r"[a-zA-Z0-9-_.:@#,/+ ]*")
    names = {
        group_queue("mb.", "meshbus", "g", p) for p in ["jobs.>", "jobs.*", "jobs.a", "*.>", ">"]
    }
    assert len(names) == 5
    assert "mb.meshbus.g.g.jobs.#" in names
    for name in [*names, group_queue("mb.", "meshbus", "g", "*." * 127 + ">")]:
        assert valid.fullmatch(name), name


def test_bad_options_are_invalid_urls() -> None:
    for url in [
        "amqp://",
        "amqp://h?max_deliver=0",
        "amqp://h?connect_timeout=x",
        "amqp://h?exchange=amq.topic",
        "amqp://h?max_payload=0",
    ]:
        with pytest.raises(InvalidURL):
            RabbitTransport(url)
    with pytest.raises(InvalidURL):  # unknown query parameters go to aio-pika; options do not
        RabbitTransport("amqp://h", {"nonsense": 1})


@pytest.mark.asyncio
async def test_unreachable_broker_fails_fast_with_connect_failed() -> None:
    started = time.monotonic()
    with pytest.raises(ConnectFailed, match="cannot connect to RabbitMQ"):
        await meshbus.connect(f"amqp://guest:guest@127.0.0.1:{free_port()}/?connect_timeout=2")
    assert time.monotonic() - started < 5


@pytest.mark.asyncio
async def test_delivery_limit_dead_letters_with_the_attempt_count(
    rabbitmq_server: RabbitMQServer,
) -> None:
    tag = uuid.uuid4().hex[:10]
    subject, group = f"d{tag}.x", f"g{tag}"
    async with (
        meshbus.connect(f"{rabbitmq_server.url}?max_deliver=2") as bus,
        bus.subscribe(dead_letter_subject(group), group="ops") as graveyard,
        bus.subscribe(subject, group=group) as sub,
    ):
        await bus.publish(subject, b"poison")
        for attempt in (1, 2):
            msg = await anext(sub)
            assert msg.attempt == attempt
            await msg.nack()
        corpse = await anext(graveyard)
        await corpse.ack()
        assert corpse.headers[ATTEMPT] == "2"
        assert corpse.headers[DEAD_GROUP] == group
        assert "max_deliver" in corpse.headers[DEAD_REASON]


async def queue_depth(url: str, queue: str) -> int:
    """Messages ready in ``queue`` (a passive declare)."""
    async with await aio_pika.connect(url) as connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.message_count or 0)


@pytest.mark.asyncio
async def test_requests_bypass_the_group_queue(rabbitmq_server: RabbitMQServer) -> None:
    """Requests are live: they go to members on the group's request queue, never into its
    durable quorum queue. A group that is declared but has no member online answers nobody,
    so a request to it raises NoResponders at once instead of waiting in the quorum queue. A
    nacked request comes again."""
    tag = uuid.uuid4().hex[:10]
    subject, group = f"r{tag}.x", f"g{tag}"
    queue = group_queue("mb.", "meshbus", group, subject)
    async with meshbus.connect(rabbitmq_server.url) as bus:
        await bus.declare_group(subject, group)
        started = time.monotonic()
        with pytest.raises(NoResponders):
            await bus.request(subject, b"?", timeout=20)
        assert time.monotonic() - started < 5
        async with bus.subscribe(subject, group=group) as sub:
            asking = asyncio.ensure_future(bus.request(subject, b"q", timeout=10))
            msg = await anext(sub)
            assert (msg.data, msg.attempt) == (b"q", 1)
            await msg.nack()  # a classic queue only flags the redelivery: attempt 2
            msg = await anext(sub)
            assert (msg.data, msg.attempt) == (b"q", 2)
            await msg.respond(b"a")
            assert (await asking).data == b"a"
            await bus.publish(subject, b"plain")
            plain = await anext(sub)
            assert plain.data == b"plain"
            await plain.ack()
        assert await queue_depth(rabbitmq_server.url, queue) == 0
