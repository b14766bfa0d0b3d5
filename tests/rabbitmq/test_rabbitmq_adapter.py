"""amqp:// beyond the shared contract: options, naming, first connect, delivery limit."""

from __future__ import annotations

import time
import uuid

import pytest

import meshbus
from meshbus.errors import ConnectFailed, InvalidURL
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
