"""How meshbus subjects and groups map onto JetStream streams and consumers.

- A **stream** covers one subject space, the first token of a subject: meshbus creates
  ``<stream_prefix><space>`` (``MB_orders``) capturing ``orders`` and ``orders.>`` when the
  first group in that space is declared or subscribed. A stream that already captures the
  subjects (made by an operator or another application) is found and reused instead.
  Streams use interest retention: a message is kept until every group on it has acked it, and
  a message no group wants is not kept (as broadcast semantics say).
- A **consumer** is one group on one pattern: the durable push consumer
  ``<group>_<10 hex digits of sha256(pattern)>`` with ``filter_subject=pattern``, delivering to
  ``_MB.D.<stream>.<consumer>`` as queue group ``<consumer>``; members are core queue
  subscribers of that subject. New groups start with messages published after they exist.
- Groups on a pattern whose first token is a wildcard are not supported (no space to own).
"""

from __future__ import annotations

import hashlib

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from meshbus.errors import NotSupported
from meshbus_nats._errors import mapped

__all__ = ["Consumer", "consumer_name", "ensure_consumer", "ensure_stream", "find_stream"]


def space_of(subject: str) -> str:
    """The first token of ``subject``."""
    return subject.partition(".")[0]


def consumer_name(group: str, pattern: str) -> str:
    """The durable consumer name of ``group`` on ``pattern``."""
    return f"{group}_{hashlib.sha256(pattern.encode()).hexdigest()[:10]}"


class Consumer:
    """Where a group's messages come from: its stream, durable name and deliver subject."""

    __slots__ = ("deliver_subject", "name", "pattern", "stream")

    def __init__(self, stream: str, name: str, pattern: str) -> None:
        self.stream = stream
        self.name = name
        self.pattern = pattern
        self.deliver_subject = f"_MB.D.{stream}.{name}"


async def find_stream(js: JetStreamContext, subject: str) -> str | None:
    """The name of the stream capturing ``subject``, or ``None``."""
    with mapped("stream lookup", subject):
        try:
            return await js.find_stream_name_by_subject(subject)
        except nats.js.errors.NotFoundError:
            return None


async def ensure_stream(js: JetStreamContext, pattern: str, prefix: str) -> str:
    """The stream capturing ``pattern``: found, or created for its subject space."""
    space = space_of(pattern)
    if space in ("*", ">"):
        raise NotSupported(
            f"a group on {pattern!r} has no subject space to keep messages in; start the "
            "pattern with a literal token (e.g. 'orders.>')"
        )
    found = await find_stream(js, pattern)
    if found is not None:
        return found
    name = f"{prefix}{space}"
    config = StreamConfig(
        name=name,
        subjects=[space, f"{space}.>"],
        retention=RetentionPolicy.INTEREST,
        storage=StorageType.FILE,
        description=f"meshbus groups on {space}.>",
    )
    with mapped("stream creation", pattern):
        try:
            await js.add_stream(config)
        except nats.js.errors.BadRequestError:
            # Created meanwhile by another member, or overlapping a foreign stream.
            found = await find_stream(js, pattern)
            if found is None:
                raise
            return found
    return name


async def ensure_consumer(
    js: JetStreamContext,
    stream: str,
    group: str,
    pattern: str,
    *,
    ack_wait: float,
    max_ack_pending: int,
) -> Consumer:
    """The durable consumer of ``group`` on ``pattern`` in ``stream``, created if missing."""
    consumer = Consumer(stream, consumer_name(group, pattern), pattern)
    with mapped("consumer creation", pattern):
        try:
            await js.consumer_info(stream, consumer.name)
            return consumer
        except nats.js.errors.NotFoundError:
            pass
        config = ConsumerConfig(
            durable_name=consumer.name,
            description=f"meshbus group {group!r} on {pattern!r}",
            deliver_subject=consumer.deliver_subject,
            deliver_group=consumer.name,
            deliver_policy=DeliverPolicy.NEW,
            filter_subject=pattern,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ack_wait,
            max_deliver=-1,  # meshbus dead-letters past max_deliver itself
            max_ack_pending=max_ack_pending,
        )
        await js.add_consumer(stream, config)
    return consumer
