"""Where a group's messages are kept: JetStream streams and durable consumers (named as
``_naming`` says).

A stream that already captures a pattern's subjects is found and used; otherwise meshbus
creates one for the pattern's subject space when the first group in that space is declared or
subscribed. Streams use interest retention: a message is kept until every group on it has
acked it, and a message no group wants is not kept (as broadcast semantics say). New groups
start with messages published after they exist.
"""

from __future__ import annotations

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
from meshbus_nats._naming import consumer_name, deliver_subject, space_of, stream_name

__all__ = ["Consumer", "ensure_consumer", "ensure_stream", "find_stream"]


class Consumer:
    """Where a group's messages come from: its stream, durable name and deliver subject."""

    __slots__ = ("deliver_subject", "name", "pattern", "stream")

    def __init__(self, stream: str, name: str, pattern: str) -> None:
        self.stream = stream
        self.name = name
        self.pattern = pattern
        self.deliver_subject = deliver_subject(stream, name)


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
    name = stream_name(prefix, space)
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
