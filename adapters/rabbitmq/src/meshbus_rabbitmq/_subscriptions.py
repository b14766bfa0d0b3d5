"""Subscriptions of the ``amqp://`` channel: broadcast (an exclusive auto-delete queue) and
group members (consumers of the group's durable quorum queue).

Each has a channel of its own with ``basic.qos(prefetch)``: the broker never has more than
``prefetch`` unsettled messages out to one consumer. Both also receive requests, which travel
on the request exchange: a broadcast queue is bound there too, and a group's members share a
classic, non-durable request queue (a second consumer on the member's channel, with its own
``prefetch``). Requests are live, their asker waits, so they skip the quorum queue's log.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import Any, Protocol

import aiormq.abc
from aio_pika.abc import AbstractChannel, AbstractConnection
from pamqp.commands import Basic

from meshbus.headers import KEY, dead_letter_headers
from meshbus.headers import dead_letter_subject as dead_letter_subject_of
from meshbus.kit import Inbox
from meshbus.message import Message
from meshbus.transport import Capabilities, Envelope
from meshbus_rabbitmq._errors import AMQP_ERRORS, translate
from meshbus_rabbitmq._naming import binding_key, broadcast_queue
from meshbus_rabbitmq._options import RabbitOptions
from meshbus_rabbitmq._requests import ASKER

__all__ = ["PRIOR", "SUBJECT", "Broadcast", "Host", "Member", "Subscription"]

PRIOR = "mb-prior-attempts"
"""Deliveries a message had before it was parked for ``nack(delay)`` (the copy that comes back
starts a new delivery count)."""
SUBJECT = "mb-subject"
"""The original subject of a parked message (dead-lettering back changes its routing key)."""
REQUEST_QUEUE_EXPIRES_MS = 10_000
"""A group's request queue is deleted this long after its last member left (requests still
in it expire with their asker's timeout)."""
REQUEST_QUEUE_ARGUMENTS: dict[str, Any] = {"x-expires": REQUEST_QUEUE_EXPIRES_MS}
_BROKER_HEADERS = ("x-death", "x-first-death-exchange", "x-first-death-queue",
                   "x-first-death-reason", "x-last-death-exchange", "x-last-death-queue",
                   "x-last-death-reason")  # fmt: skip


class Host(Protocol):
    """What a subscription uses of its transport (``RabbitTransport``)."""

    options: RabbitOptions
    capabilities: Capabilities
    exchange: str
    """The topic exchange of every subject."""
    requests: str
    """The topic exchange of requests."""

    async def send_reply(self, reply: Envelope, correlation_id: str) -> None:
        """Send a reply to its asker's reply queue."""

    async def publish_dead_letter(
        self, subject: str, data: bytes, headers: dict[str, Any], msg_id: str
    ) -> None:
        """Publish a dead letter, confirmed."""

    async def publish_delayed(
        self, target: str, delay: float, data: bytes, props: Basic.Properties
    ) -> None:
        """Park a message for ``delay`` seconds before it goes back to the queue ``target``."""

    def forget(self, sub: Subscription) -> None:
        """``sub`` closed."""


class _Inbox(Inbox):
    """Deliveries of one subscription's consumer, waiting for ``__anext__``."""

    def __init__(self, transport: Host, pattern: str, prefetch: int) -> None:
        super().__init__(prefetch)
        self.transport = transport
        self.pattern = pattern
        self.max_payload = transport.capabilities.max_payload
        self.channel: AbstractChannel | None = None
        self.ch: aiormq.abc.AbstractChannel | None = None
        self.consumer_tags: list[str] = []

    def routes(self) -> list[tuple[str, str]]:
        """``(queue, exchange)`` pairs to bind to the pattern."""
        raise NotImplementedError

    def consumed(self) -> list[str]:
        """The queues this subscription consumes."""
        raise NotImplementedError

    async def declare(self, ch: aiormq.abc.AbstractChannel) -> None:
        raise NotImplementedError

    async def attach(self, conn: AbstractConnection) -> None:
        """Open a channel on ``conn``, declare and bind the queues, start consuming (at start
        and again after each reconnect). Messages of a lost channel are dropped here: the
        broker delivers them again."""
        self.queue.clear()
        channel = await conn.channel(publisher_confirms=False)
        self.channel = channel
        ch = await channel.get_underlay_channel()
        await ch.basic_qos(prefetch_count=self.prefetch)
        await self.declare(ch)
        key = binding_key(self.pattern)
        for queue, exchange in self.routes():
            await ch.queue_bind(queue, exchange, routing_key=key)
        self.ch = ch
        tags = []
        for queue in self.consumed():
            ok = await ch.basic_consume(queue, self._on_delivery)
            tags.append(ok.consumer_tag or "")
        self.consumer_tags = tags

    async def detach(self) -> None:
        """Close the channel (the broker requeues what was not acked)."""
        channel, self.channel = self.channel, None
        if channel is not None:
            with contextlib.suppress(*AMQP_ERRORS):
                await channel.close()

    def _message(self, delivered: aiormq.abc.DeliveredMessage) -> Message:
        props = delivered.header.properties
        headers: dict[str, Any] = props.headers or {}
        headers.pop(ASKER, None)
        count = headers.pop("x-delivery-count", None)  # quorum queues count deliveries
        if count is None:  # a classic queue (requests) only flags a redelivery
            count = 1 if getattr(delivered.delivery, "redelivered", False) else 0
        attempt = count + 1
        subject = delivered.routing_key or ""
        if PRIOR in headers:
            attempt += int(headers.pop(PRIOR))
            subject = headers.pop(SUBJECT, subject)
            for name in _BROKER_HEADERS:
                headers.pop(name, None)
        return Message(
            subject,
            delivered.body,
            headers,
            key=headers.get(KEY),
            id=props.message_id or "",
            attempt=attempt,
            reply_to=props.reply_to,
            settler=self,
            token=(delivered.channel, delivered.delivery_tag),
        )

    async def _on_delivery(self, delivered: aiormq.abc.DeliveredMessage) -> None:
        if not self.closing:
            self.push(self._message(delivered))

    # -- settling --------------------------------------------------------------------------

    async def ack(self, message: Message) -> None:
        """Nothing to do by default (broadcast messages are acked when handed out)."""

    async def nack(self, message: Message, delay: float | None) -> None:
        """Nothing to do by default: a broadcast subscription keeps nothing to redeliver."""

    async def reject(self, message: Message, reason: str) -> None:
        """Nothing to do by default (broadcast messages have no group to dead-letter into)."""

    async def progress(self, message: Message) -> None:
        """Nothing to do: RabbitMQ runs no per-delivery timer short of its consumer timeout."""

    async def respond(self, message: Message, reply: Envelope) -> None:
        """Send ``reply`` to the requester's reply queue."""
        await self.transport.send_reply(reply, message.id)


class Broadcast(_Inbox):
    """A broadcast subscription: its own exclusive auto-delete queue bound to the pattern.
    Messages are acked (in batches) as they are handed out, so settling changes nothing."""

    def __init__(self, transport: Host, pattern: str, prefetch: int) -> None:
        super().__init__(transport, pattern, prefetch)
        options = transport.options
        self.name = broadcast_queue(options.queue_prefix, transport.exchange, uuid.uuid4().hex)
        self.unacked = 0
        self.last: tuple[Any, int] | None = None
        self.batch = max(1, prefetch // 4)

    def routes(self) -> list[tuple[str, str]]:
        transport = self.transport
        return [(self.name, transport.exchange), (self.name, transport.requests)]

    def consumed(self) -> list[str]:
        return [self.name]

    async def declare(self, ch: aiormq.abc.AbstractChannel) -> None:
        await ch.queue_declare(self.name, exclusive=True, auto_delete=True)

    async def __anext__(self) -> Message:
        if self.unacked and not self.queue:
            await self._ack_handed_out()  # about to wait: let the broker send more
        message = await Inbox.__anext__(self)
        if self.unacked >= self.batch:
            await self._ack_handed_out()
        return message

    def _take(self, message: Message) -> Message:
        self.last = message.token
        self.unacked += 1
        return message

    async def _ack_handed_out(self) -> None:
        self.unacked = 0
        if self.last is not None:
            ch, tag = self.last
            self.last = None
            with contextlib.suppress(*AMQP_ERRORS):  # a lost channel: nothing left to ack
                await ch.basic_ack(tag, multiple=True, wait=False)

    async def close(self, timeout: float) -> None:
        """Stop consuming and drop the queue; settling a broadcast message changes nothing."""
        if self.closing:
            return
        self._stop()
        self.transport.forget(self)
        await self.detach()


class Member(_Inbox):
    """One member of a group: a consumer of the group's quorum queue and of its request queue.
    ``ack`` is basic.ack, ``nack`` basic.nack with requeue (or, with a delay, a confirmed copy
    parked in a TTL queue that dead-letters back, then an ack), ``reject`` a confirmed publish
    to ``dead-letter.<group>`` then an ack."""

    _take = Inbox._track  # a delivery is in flight from when it is handed out

    def __init__(self, transport: Host, pattern: str, prefetch: int, group: str,
                 queue: str, request_queue: str) -> None:  # fmt: skip
        super().__init__(transport, pattern, prefetch)
        self.group = group
        self.name = queue
        self.request_queue = request_queue
        self.dead_subject = dead_letter_subject_of(group)
        self.max_deliver = transport.options.max_deliver

    def routes(self) -> list[tuple[str, str]]:
        transport = self.transport
        return [(self.name, transport.exchange), (self.request_queue, transport.requests)]

    def consumed(self) -> list[str]:
        return [self.name, self.request_queue]

    async def declare(self, ch: aiormq.abc.AbstractChannel) -> None:
        await ch.queue_declare(self.name, durable=True, arguments={"x-queue-type": "quorum"})
        await ch.queue_declare(self.request_queue, arguments=REQUEST_QUEUE_ARGUMENTS)

    async def _on_delivery(self, delivered: aiormq.abc.DeliveredMessage) -> None:
        if self.closing:
            return  # left unacked: the broker requeues it when the channel closes
        message = self._message(delivered)
        if 0 < self.max_deliver < message.attempt:
            message.attempt -= 1
            reason = f"delivered {message.attempt} times, the group's max_deliver"
            with contextlib.suppress(Exception):  # left unacked, it comes again
                await self._dead_letter(message, reason)
            return
        self.push(message)

    async def ack(self, message: Message) -> None:
        """basic.ack: done with. On a channel lost since delivery the ack cannot reach the
        broker, which delivers the message again (at least once)."""
        self._release(message)
        ch, tag = message.token
        with contextlib.suppress(*AMQP_ERRORS):
            await ch.basic_ack(tag, wait=False)

    async def nack(self, message: Message, delay: float | None) -> None:
        """Requeue at once, or park a copy for ``delay`` seconds and ack the original."""
        self._release(message)
        ch, tag = message.token
        if not delay:
            with contextlib.suppress(*AMQP_ERRORS):
                await ch.basic_nack(tag, requeue=True, wait=False)
            return
        headers: dict[str, Any] = dict(message.headers)
        headers[PRIOR] = str(message.attempt)
        headers[SUBJECT] = message.subject
        props = Basic.Properties(headers=headers, delivery_mode=2, message_id=message.id,
                                 reply_to=message.reply_to)  # fmt: skip
        await self.transport.publish_delayed(self.name, delay, message.data, props)
        with contextlib.suppress(*AMQP_ERRORS):
            await ch.basic_ack(tag, wait=False)

    async def reject(self, message: Message, reason: str) -> None:
        """Publish to ``dead-letter.<group>`` (confirmed), then ack."""
        self._release(message)
        await self._dead_letter(message, reason)

    async def _dead_letter(self, message: Message, reason: str) -> None:
        headers = dead_letter_headers(
            message.headers, message.subject, self.group, reason, message.attempt
        )
        await self.transport.publish_dead_letter(
            self.dead_subject, message.data, headers, f"{message.id}:dead:{self.group}"
        )
        ch, tag = message.token
        try:
            await ch.basic_ack(tag, wait=False)
        except AMQP_ERRORS as exc:
            raise translate(exc, "reject", message.subject) from exc

    async def close(self, timeout: float) -> None:
        """Stop deliveries, wait up to ``timeout`` for handed-out messages to be settled, then
        close the channel: the broker requeues every unsettled message."""
        if self.closing:
            return
        self._stop()
        ch = self.ch
        if ch is not None:
            for tag in self.consumer_tags:
                with contextlib.suppress(*AMQP_ERRORS):
                    await ch.basic_cancel(tag)
        await self._drain(timeout)
        self._unsettled()  # the broker requeues them when the channel closes
        self.transport.forget(self)
        await self.detach()


Subscription = Broadcast | Member
