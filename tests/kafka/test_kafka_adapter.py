"""kafka:// beyond the shared contract: naming, options, commit tracking, a consumer crash."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import pytest

import meshbus
from meshbus.errors import ConnectFailed, InvalidURL, PayloadTooLarge
from meshbus.testing.brokers import TansuBroker, free_port
from meshbus_kafka import KafkaTransport, pattern_regex, subject_of, topic_of
from meshbus_kafka._naming import MAX_TOPIC, is_hashed
from meshbus_kafka._tracker import Partition

OPTIONS = {
    "kafka": {"idempotence": False, "session_timeout_ms": 1000, "heartbeat_interval_ms": 100}
}


def test_topic_names_are_reversible_and_free_of_underscores() -> None:
    for subject in ["orders.created", "a_b", "a-b", "a.b", "x--u_-.y", "-_-"]:
        topic = topic_of(subject)
        assert "_" not in topic
        assert len(topic) <= MAX_TOPIC
        assert subject_of(topic) == subject
    # a.b and a_b would collide in Kafka's metric names; their topics cannot.
    assert topic_of("a.b").replace(".", "_") != topic_of("a_b").replace(".", "_")
    long = "p." + "x" * 253
    assert len(topic_of(long)) <= MAX_TOPIC
    assert is_hashed(topic_of(long))
    assert not is_hashed(topic_of("a-h0123456789abcdef"))


def test_patterns_match_the_topics_of_their_subjects() -> None:
    import re

    star, tail = re.compile(pattern_regex("p.*")), re.compile(pattern_regex("p.>"))
    assert star.match(topic_of("p.a_b"))
    assert not star.match(topic_of("p.a.b"))
    assert tail.match(topic_of("p.a.b-c"))
    assert not tail.match(topic_of("p"))
    assert not star.match("_mb_retry_abc")


def test_commit_position_never_passes_an_unsettled_offset() -> None:
    part = Partition(None)
    for offset in (10, 11, 12):
        part.fetched(offset)
    part.settle(12)
    part.settle(11)
    assert part.position() == 10
    part.settle(10)
    assert part.position() == 13


def test_bad_options_are_invalid_urls() -> None:
    for url in [
        "kafka://",
        "kafka://h:9092?partitions=0",
        "kafka://h?nonsense=1",
        "kafka://h?linger_ms=x",
    ]:
        with pytest.raises(InvalidURL):
            KafkaTransport(url)
    opts = KafkaTransport("kafka://u:p%40ss@k1:9092,k2?sasl_mechanism=PLAIN").options
    assert opts.bootstrap_servers == ["k1:9092", "k2:9092"]
    assert opts.client_kwargs()["security_protocol"] == "SASL_PLAINTEXT"
    assert opts.sasl_password == "p@ss"


@pytest.mark.asyncio
async def test_unreachable_broker_fails_fast_with_connect_failed() -> None:
    started = time.monotonic()
    with pytest.raises(ConnectFailed):
        await meshbus.connect(f"kafka://127.0.0.1:{free_port()}?connect_timeout=2", options=OPTIONS)
    assert time.monotonic() - started < 6


@pytest.mark.asyncio
async def test_headers_count_against_the_record_limit(kafka_broker: TansuBroker) -> None:
    async with meshbus.connect(kafka_broker.url + "?max_payload=1000", options=OPTIONS) as bus:
        subject = f"k{uuid.uuid4().hex[:8]}.x"
        with pytest.raises(PayloadTooLarge):
            await bus.publish(subject, b"x" * 1001)
        with pytest.raises(PayloadTooLarge):
            await bus.publish(subject, b"x" * 10, headers={"h": "v" * 40_000})


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_a_crashed_member_does_not_skip_a_message_acked_around(
    kafka_broker: TansuBroker,
) -> None:
    """Acks after an unsettled message do not move the commit past it: a member that dies
    without closing leaves it to the next member (with what followed, at least once)."""
    tag = uuid.uuid4().hex[:8]
    subject, group = f"c{tag}.work", f"g{tag}"
    async with meshbus.connect(kafka_broker.url, options=OPTIONS) as bus:
        crashing = await bus.subscribe(subject, group=group)
        await bus.publish_many([meshbus.Outgoing(subject, i, key="one") for i in range(3)])
        first, second, third = [await crashing.__anext__() for _ in range(3)]
        await third.ack()
        await second.ack()
        await asyncio.sleep(0.5)  # a few commit rounds
        member = crashing._parts[0]
        for task in member.tasks:  # die: no give-back, no final commit
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await member.consumer.stop()
        member.closing = True
        async with bus.subscribe(subject, group=group) as again:
            got = [await asyncio.wait_for(again.__anext__(), 20) for _ in range(3)]
            assert [m.json() for m in got] == [0, 1, 2]
            assert got[0].id == first.id
            for message in got:
                await message.ack()


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_publish_many_over_many_batches_keeps_each_keys_order(
    kafka_broker: TansuBroker,
) -> None:
    """publish_many sends one closed batch per partition, more when a batch is full
    (max_batch_size 64 KiB here): every message arrives, each key's in publish order."""
    tag = uuid.uuid4().hex[:8]
    subject, group = f"m{tag}.work", f"g{tag}"
    url = kafka_broker.url + "?max_batch_size=65536"
    keys = ["a", "b", "c", "d", "e"]
    batch = [
        meshbus.Outgoing(subject, {"k": keys[n % 5], "n": n, "pad": "x" * 4000}, key=keys[n % 5])
        for n in range(300)
    ]
    async with (
        meshbus.connect(url, options=OPTIONS) as pub,
        meshbus.connect(url, options=OPTIONS) as con,
        con.subscribe(subject, group=group) as sub,
    ):
        assert len(await pub.publish_many(batch)) == 300
        seen: dict[str, list[int]] = {key: [] for key in keys}
        async with asyncio.timeout(30):
            for _ in range(300):
                msg = await sub.__anext__()
                body = msg.json()
                seen[body["k"]].append(body["n"])
                await msg.ack()
        assert seen == {key: list(range(i, 300, 5)) for i, key in enumerate(keys)}
