"""``kafka://`` — the Kafka channel on aiokafka (see ``_naming`` for topics, ``_subscriptions``
for groups and broadcast subscribers, ``_requests`` for request/reply).

One idempotent producer (``acks=all``; fenced and replaced after a failed publish, see
``_producer``) per transport publishes; topics are created with
``partitions`` partitions the first time this transport publishes or subscribes to them (an
existing topic is used as it is). The record key is the meshbus key, so Kafka's partitioner
keeps messages of one key in one partition, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from meshbus.errors import (
    Closed,
    PayloadTooLarge,
    PublishRejected,
    RequestTimeout,
    TransportError,
)
from meshbus.headers import (
    ATTEMPT,
    CORRELATION_ID,
    MESSAGE_ID,
    REPLY_TO,
    dead_letter_headers,
    dead_letter_subject,
)
from meshbus.kit import BoundedCache
from meshbus.message import Message
from meshbus.transport import Capabilities, Envelope
from meshbus_kafka import _compat
from meshbus_kafka._errors import KAFKA_ERRORS, mapped
from meshbus_kafka._naming import (
    SUBJECT_HEADER,
    group_id,
    is_hashed,
    reply_topic,
    retry_topic,
    topic_of,
)
from meshbus_kafka._options import KafkaOptions
from meshbus_kafka._producer import Partitioner, Producer, Records, connect_failed, send_batches
from meshbus_kafka._requests import Replies
from meshbus_kafka._subscriptions import DUE_HEADER, Broadcast, Member, Subscription

__all__ = ["RECORD_HEADROOM", "KafkaTransport"]

log = logging.getLogger("meshbus.kafka")

RECORD_HEADROOM = 32 * 1024
"""Bytes a record may use beyond ``max_payload`` for its key and headers."""
_EXISTS = 36  # TOPIC_ALREADY_EXISTS


class KafkaTransport:
    """The ``kafka://`` channel (see the module docstring and the README's Kafka section)."""

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        self.url = url
        self.options = KafkaOptions.parse(url, options or {})
        self.capabilities = Capabilities(
            max_payload=self.options.max_payload,
            durable=True,
            ordered_by_key=True,
            reconnects=True,
        )
        self.record_limit = self.options.max_payload + RECORD_HEADROOM
        self.client_uid = uuid.uuid4().hex[:16]
        self.producer = Producer(
            self.options, Partitioner(self.client_uid), self.record_limit + 1024
        )
        self.producer.on_fence(self._topics_unknown)
        self._started = False
        self._admin: Any = None
        self._replies: Replies | None = None
        self._topics: dict[str, asyncio.Future[None]] = {}
        self._topic_of: BoundedCache[str, tuple[str, bool]] = BoundedCache()
        """Subject -> (its topic, whether records there carry their subject in a header)."""
        self._pinned: set[str] = set()
        self._subs: set[Subscription] = set()
        self._closed = False

    # -- connection ------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect the producer and admin client; failing raises ``ConnectFailed`` at once
        (``NotSupported`` where the installed aiokafka lacks what fencing needs)."""
        opts = self.options
        admin = AIOKafkaAdminClient(**opts.client_kwargs())
        try:
            async with asyncio.timeout(opts.connect_timeout):
                await admin.start()
                await self.producer.start()
        except BaseException as exc:
            with contextlib.suppress(*KAFKA_ERRORS):
                await admin.close()
            if isinstance(exc, (*KAFKA_ERRORS, TimeoutError)):
                servers = ",".join(opts.bootstrap_servers)
                raise connect_failed(servers, exc, opts.idempotence) from exc
            raise
        self._admin = admin
        self._started = True

    def _topics_unknown(self) -> None:
        """The producer was fenced (the broker may have restarted): check topics again."""
        self._topics.clear()

    def make_consumer(self, group_id: str | None, auto_offset_reset: str, **extra: Any) -> Any:
        """An aiokafka consumer with this channel's settings and manual commits."""
        opts = self.options
        settings: dict[str, Any] = {
            **opts.client_kwargs(),
            "group_id": group_id,
            "enable_auto_commit": False,
            "auto_offset_reset": auto_offset_reset,
            "session_timeout_ms": opts.session_timeout_ms,
            "heartbeat_interval_ms": opts.heartbeat_interval_ms,
            "fetch_max_wait_ms": opts.fetch_max_wait_ms,
            "max_partition_fetch_bytes": max(1 << 20, self.record_limit + 4096),
        }
        settings.update(extra)
        return AIOKafkaConsumer(**settings)

    # -- topics ----------------------------------------------------------------------------

    def topic(self, subject: str) -> tuple[str, bool]:
        """The topic of ``subject``, and whether it is hashed (its records then carry their
        subject in a header); cached."""
        found = self._topic_of.get(subject)
        if found is None:
            topic = topic_of(subject)
            found = self._topic_of.put(subject, (topic, is_hashed(topic)))
        return found

    async def ensure_topic(self, topic: str, partitions: int | None = None) -> None:
        """Create ``topic`` unless this transport made or saw it before (exists: fine)."""
        known = self._topics.get(topic)
        if known is not None and (not known.done() or known.exception() is None):
            await known
            return
        future = self._topics[topic] = asyncio.get_running_loop().create_future()
        new = NewTopic(topic, partitions or self.options.partitions, self.options.replication)
        try:
            with mapped("topic creation", topic):
                if self._admin is None or self._closed:
                    raise Closed(f"{self.url} is not connected")
                response = await self._admin.create_topics([new])
            for _name, code, *rest in response.topic_errors:
                if code not in (0, _EXISTS):
                    raise PublishRejected(f"Kafka refused to create topic {topic!r}: {rest}")
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):  # its waiters were not cancelled
                future.set_exception(TransportError(f"creating topic {topic!r} was cut short"))
            else:
                future.set_exception(exc)
            future.exception()  # retrieved: the next call tries again
            raise
        future.set_result(None)

    async def pin_group(self, kafka_group: str, topics: list[str]) -> None:
        """Give a new consumer group a position on ``topics``: their current end, committed
        (a group that has committed offsets keeps them). Messages published after this are
        kept for the group even before its first member joins."""
        if kafka_group in self._pinned:
            return
        consumer = self.make_consumer(group_id=kafka_group, auto_offset_reset="latest")
        with mapped("declare group", kafka_group):
            await consumer.start()
            try:
                tps = await _compat.partitions(consumer, self._admin, topics, refresh=True)
                consumer.assign(tps)
                committed = [await consumer.committed(tp) for tp in tps]
                if tps and all(offset is None for offset in committed):
                    ends = await consumer.end_offsets(tps)
                    await consumer.commit(ends)
            finally:
                await consumer.stop()
        self._pinned.add(kafka_group)

    async def partitions(self, consumer: Any, topics: Iterable[str]) -> list[Any]:
        """Every partition of ``topics``, for ``consumer`` to be assigned (``_compat``)."""
        return await _compat.partitions(consumer, self._admin, topics)

    async def delete_topic(self, topic: str) -> None:
        """Delete ``topic``; nothing if that fails."""
        with contextlib.suppress(*KAFKA_ERRORS):
            await self._admin.delete_topics([topic])

    # -- publishing ------------------------------------------------------------------------

    def _record(self, envelope: Envelope, hashed: bool) -> tuple[bytes | None, list[Any]]:
        headers: list[tuple[str, bytes]] = [(MESSAGE_ID, envelope.id.encode())]
        key = envelope.key.encode() if envelope.key is not None else None
        if envelope.headers:
            headers.extend([(k, v.encode()) for k, v in envelope.headers.items()])
        if hashed:
            headers.append((SUBJECT_HEADER, envelope.subject.encode()))
        if len(headers) > 1 or key is not None:
            size = len(envelope.data) + len(key or b"") + 64
            size += sum(len(k) + len(v) + 8 for k, v in headers)
            if size > self.record_limit:
                raise PayloadTooLarge(size, self.record_limit, envelope.subject)
        return key, headers

    def _check_open(self) -> None:
        if self._closed or not self._started:
            raise Closed(f"{self.url} is not connected")

    async def publish(self, envelope: Envelope, timeout: float | None) -> None:
        """Send one record and wait for the broker's ``acks=all`` answer."""
        self._check_open()
        topic, hashed = self.topic(envelope.subject)
        key, headers = self._record(envelope, hashed)

        async def enqueue(producer: Any, futures: list[Any]) -> None:
            if topic not in self._topics:
                await self.ensure_topic(topic)
            futures.append(await producer.send(topic, envelope.data, key=key, headers=headers))

        await self.producer.deliver(envelope.subject, timeout, enqueue)

    async def publish_many(self, envelopes: Sequence[Envelope], timeout: float | None) -> None:
        """Send the records as closed batches, one per partition (sent at once, no linger;
        order kept per partition), then wait for every batch's ``acks=all`` answer."""
        self._check_open()
        if not envelopes:
            return
        records = []
        for envelope in envelopes:
            topic, hashed = self.topic(envelope.subject)
            records.append((topic, *self._record(envelope, hashed), envelope.data))
        partitioner = self.producer.partitioner

        async def enqueue(producer: Any, futures: list[Any]) -> None:
            known: dict[str, list[int]] = {}
            slots: dict[tuple[str, int], Records] = {}
            for topic, key, headers, data in records:
                partitions = known.get(topic)
                if partitions is None:
                    if topic not in self._topics:
                        await self.ensure_topic(topic)
                    partitions = known[topic] = sorted(await producer.partitions_for(topic))
                slot = (topic, partitioner(key, partitions, partitions))
                batch = slots.get(slot)
                if batch is None:
                    batch = slots[slot] = []
                batch.append((key, data, headers))
            await send_batches(producer, slots, futures)

        await self.producer.deliver(envelopes[0].subject, timeout, enqueue)

    async def _send_one(
        self,
        topic: str,
        data: bytes,
        key: bytes | None,
        headers: list[Any],
        subject: str,
        partition: int | None = None,
    ) -> None:
        """Publish one record of meshbus's own (retry, dead letter, reply), 30 s timeout."""
        self._check_open()

        async def enqueue(producer: Any, futures: list[Any]) -> None:
            await self.ensure_topic(topic)
            futures.append(
                await producer.send(topic, data, key=key, headers=headers, partition=partition)
            )

        await self.producer.deliver(subject, 30.0, enqueue)

    async def _republish(self, topic: str, message: Message, headers: dict[str, str]) -> None:
        key = message.key.encode() if message.key is not None else None
        encoded = [(k, v.encode()) for k, v in headers.items()]
        await self._send_one(topic, message.data, key, encoded, message.subject)

    async def retry(self, topic: str, message: Message, delay: float | None) -> None:
        """Publish ``message`` to a group's retry topic, due after ``delay`` seconds."""
        headers = dict(message.headers)
        headers[ATTEMPT] = str(message.attempt + 1)
        headers[SUBJECT_HEADER] = message.subject
        # Rounded up to the millisecond: never due before ``delay`` has passed.
        headers[DUE_HEADER] = str(math.ceil((time.time() + (delay or 0.0)) * 1000))
        await self._republish(topic, message, headers)

    async def dead_letter(self, message: Message, group: str, reason: str) -> None:
        """Publish ``message`` to ``dead-letter.<group>`` with the reason and attempt count."""
        headers = dead_letter_headers(
            message.headers, message.subject, group, reason, message.attempt
        )
        subject = dead_letter_subject(group)
        topic, hashed = self.topic(subject)
        if hashed:
            headers[SUBJECT_HEADER] = subject
        await self._republish(topic, message, headers)

    async def send_reply(self, reply: Envelope, correlation: str) -> None:
        """Send a reply to a requester's reply topic (named by its ``mb-reply-to``)."""
        headers = [(CORRELATION_ID, correlation.encode())]
        headers.extend((k, v.encode()) for k, v in reply.headers.items())
        # Partition 0: the reader reads only that one (an auto-created topic may have more).
        await self._send_one(reply.subject, reply.data, None, headers, reply.subject, 0)

    # -- subscribing -----------------------------------------------------------------------

    async def subscribe(self, pattern: str, group: str | None, prefetch: int) -> Subscription:
        """A broadcast reader, or a member of ``group``; active when this returns."""
        if self._closed:
            raise Closed(f"{self.url} is closed")
        sub: Subscription
        sub = Broadcast(self, pattern) if group is None else Member(self, pattern, group, prefetch)
        await sub.start()
        self._subs.add(sub)
        return sub

    async def declare_group(self, pattern: str, group: str) -> None:
        """Create the group's topics and pin its starting offsets (the topics' current end)."""
        kafka_group = group_id(group, pattern)
        await self.ensure_topic(retry_topic(kafka_group))
        if "*" not in pattern and ">" not in pattern:
            topic = topic_of(pattern)
            await self.ensure_topic(topic)
            await self.pin_group(kafka_group, [topic])

    def forget(self, sub: Subscription) -> None:
        """A subscription closed."""
        self._subs.discard(sub)

    # -- request / reply -------------------------------------------------------------------

    async def request(self, envelope: Envelope, timeout: float) -> Message:
        """Publish with ``mb-reply-to`` (this client's reply topic) and ``mb-correlation-id``;
        wait for the reply with that id."""
        if self._replies is None:
            self._replies = Replies(self, reply_topic(self.client_uid))
        replies = self._replies
        await replies.start()
        envelope.headers = {
            **envelope.headers,
            REPLY_TO: replies.topic,
            CORRELATION_ID: envelope.id,
        }
        waiter = replies.expect(envelope.id)
        try:
            await self.publish(envelope, timeout)
            async with asyncio.timeout(timeout):
                return await waiter
        except TimeoutError as exc:
            raise RequestTimeout(envelope.subject, timeout) from exc
        finally:
            replies.forget(envelope.id)

    # -- closing ---------------------------------------------------------------------------

    def health(self) -> Literal["connecting", "connected", "reconnecting", "closed"]:
        """Connected from ``start()`` to ``close()``: aiokafka reconnects underneath without
        saying so, so an outage shows in publishes that time out, not here
        (``meshbus.transport.ReportsHealth``)."""
        if self._closed:
            return "closed"
        return "connected" if self._started else "connecting"

    async def close(self, timeout: float) -> None:
        """Drain subscriptions (up to ``timeout``), flush, disconnect. Idempotent."""
        if self._closed or not self._started:
            self._closed = True
            return
        await asyncio.gather(
            *(sub.close(timeout) for sub in list(self._subs)), return_exceptions=True
        )
        if self._replies is not None:
            await self._replies.close()
        self._closed = True
        await self.producer.close()
        with contextlib.suppress(*KAFKA_ERRORS):
            await self._admin.close()

    def __repr__(self) -> str:
        return f"KafkaTransport({self.url!r})"
