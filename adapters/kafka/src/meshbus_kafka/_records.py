"""Reading consumer records, as every reader of a ``kafka://`` transport does: what readers use
of their transport (``Host``), records turned into meshbus messages (``RecordInbox``,
``make_message``), and partitions whose log the broker lost (``LostLogs``)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, Protocol

from meshbus.headers import ATTEMPT, CORRELATION_ID, MESSAGE_ID, REPLY_TO
from meshbus.kit import BoundedCache, Inbox
from meshbus.message import Message
from meshbus.subjects import matches
from meshbus.transport import Capabilities, Envelope
from meshbus_kafka._naming import SUBJECT_HEADER, is_hashed, subject_of
from meshbus_kafka._options import KafkaOptions

__all__ = ["LOST_LOG_PATIENCE", "Host", "LostLogs", "RecordInbox", "make_message"]


class Host(Protocol):
    """What the readers of a ``kafka://`` transport (subscriptions, the reply reader) use of
    it (``KafkaTransport``)."""

    options: KafkaOptions
    capabilities: Capabilities

    def make_consumer(self, group_id: str | None, auto_offset_reset: str, **extra: Any) -> Any:
        """An aiokafka consumer with the channel's settings and manual commits."""

    async def ensure_topic(self, topic: str, partitions: int | None = None) -> None:
        """Create ``topic`` unless it exists."""

    async def delete_topic(self, topic: str) -> None:
        """Delete ``topic`` (nothing if that fails)."""

    async def partitions(self, consumer: Any, topics: Iterable[str]) -> list[Any]:
        """Every partition of ``topics``, for ``consumer`` to be assigned."""

    async def pin_group(self, kafka_group: str, topics: list[str]) -> None:
        """Give a new consumer group a committed position at the end of ``topics``."""

    async def retry(self, topic: str, message: Message, delay: float | None) -> None:
        """Publish ``message`` to a group's retry topic, due after ``delay`` seconds."""

    async def dead_letter(self, message: Message, group: str, reason: str) -> None:
        """Publish ``message`` to ``dead-letter.<group>``."""

    async def send_reply(self, reply: Envelope, correlation: str) -> None:
        """Send a reply to a requester's reply topic."""

    def forget(self, sub: Any) -> None:
        """A subscription closed."""


LOST_LOG_PATIENCE = 2.0
"""Seconds a partition's log must end before a reader's position to count as lost."""


class LostLogs:
    """Finds partitions whose log ends before a consumer's position, and reads them again from
    their start. That happens when a broker that lost its data (memory storage) came back: the
    new log holds only messages published since, which a reader waiting at its old position
    would otherwise never see. Kafka itself answers such a fetch with OFFSET_OUT_OF_RANGE
    (and the consumer resets to the start); Tansu answers with nothing.

    A partition counts as lost only after ``patience`` seconds in that state: a new leader's
    high watermark may lag its predecessor's for a moment, and rereading a whole log for that
    would be far worse than waiting."""

    def __init__(self, consumer: Any, patience: float = LOST_LOG_PATIENCE) -> None:
        self.consumer = consumer
        self.patience = patience
        self.since: dict[Any, float] = {}

    async def check(self) -> list[Any]:
        """Rewind (and return) the partitions found lost; call it when a fetch got nothing."""
        consumer = self.consumer
        now = time.monotonic()
        lost = []
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            if high is not None and high < await consumer.position(tp):
                if now - self.since.setdefault(tp, now) >= self.patience:
                    lost.append(tp)
            else:
                self.since.pop(tp, None)
        if lost:
            for tp in lost:
                del self.since[tp]
            await consumer.seek_to_beginning(*lost)
        return lost


def make_message(
    subject: str, headers: dict[str, str], record: Any, settler: Any, token: Any
) -> Message:
    """A meshbus message for a consumer record."""
    key = record.key
    attempt = headers.get(ATTEMPT)
    return Message(
        subject,
        record.value or b"",
        headers,
        key=key.decode() if key is not None else None,
        id=headers.get(MESSAGE_ID, ""),
        attempt=int(attempt) if attempt is not None else 1,
        reply_to=headers.get(REPLY_TO),
        settler=settler,
        token=token,
    )


class RecordInbox(Inbox):
    """Messages of one subscription, made from the records of its consumer, waiting for
    ``__anext__``."""

    def __init__(
        self, transport: Host, pattern: str, *, prefetch: int = 0, capacity: int = 0
    ) -> None:
        super().__init__(prefetch, capacity)
        self.transport = transport
        self.pattern = pattern
        self.wildcard = "*" in pattern or ">" in pattern
        self.max_payload = transport.capabilities.max_payload
        self.subjects: BoundedCache[str, str | None] = BoundedCache()
        """Subject of each topic seen (``None``: hashed, its records name their subject)."""

    def decode(self, record: Any) -> tuple[str, dict[str, str]] | None:
        """The subject and headers of ``record``, or ``None`` when the pattern does not match
        (records of hashed topics or retry topics whose subject is another)."""
        headers = {name: value.decode() for name, value in record.headers}
        subject = headers.pop(SUBJECT_HEADER, None)
        if subject is None:
            topic: str = record.topic
            try:
                subject = self.subjects[topic]
            except KeyError:
                subject = self.subjects.put(topic, None if is_hashed(topic) else subject_of(topic))
            if subject is None:
                return None
        elif self.wildcard and not matches(self.pattern, subject):
            return None
        return subject, headers

    async def respond(self, message: Message, reply: Envelope) -> None:
        """Send ``reply`` to the requester's reply topic, with its correlation id."""
        await self.transport.send_reply(reply, message.headers.get(CORRELATION_ID, ""))
