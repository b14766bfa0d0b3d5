"""Subscriptions of the ``nats://`` channel: broadcast (core NATS) and group members
(a JetStream durable push consumer, shared through a core queue group).

Both also receive requests, which travel as core NATS messages on ``<request_prefix>.<subject>``
(group members as a queue group, so one member answers).
"""

from __future__ import annotations

import contextlib
import json
from typing import Protocol

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from meshbus.errors import MeshbusError
from meshbus.headers import (
    KEY,
    MESSAGE_ID,
    dead_letter_headers,
)
from meshbus.headers import dead_letter_subject as dead_letter_subject_of
from meshbus.kit import Inbox
from meshbus.message import Message
from meshbus.transport import Capabilities, Envelope
from meshbus_nats._errors import NATS_ERRORS, translate
from meshbus_nats._naming import request_subject
from meshbus_nats._options import NatsOptions
from meshbus_nats._streams import Consumer
from meshbus_nats._wire import NATS_MSG_ID, MeshClient

__all__ = ["Broadcast", "Host", "Member"]

_ACK, _NAK, _TERM, _PROGRESS = b"", b"-NAK", b"+TERM", b"+WPI"
"""JetStream acknowledgements (an empty message is +ACK)."""


class Host(Protocol):
    """What a subscription uses of its transport (``NatsTransport``)."""

    options: NatsOptions
    capabilities: Capabilities
    request_skip: int
    """Characters of ``<request_prefix>.`` before a request's subject."""

    @property
    def client(self) -> MeshClient:
        """The live connection."""

    async def send_reply(self, reply: Envelope) -> None:
        """Send a reply to a requester's inbox."""

    async def publish_dead_letter(
        self, subject: str, data: bytes, headers: dict[str, str], msg_id: str
    ) -> None:
        """Publish a dead letter to JetStream, confirmed."""

    def forget(self, sub: Broadcast | Member) -> None:
        """``sub`` closed."""


def _delivered(reply: str) -> int:
    """The delivery count in a JetStream ack subject (``$JS.ACK.<stream>.<consumer>.<n>...``,
    or the 12-token form with domain and account hash)."""
    tokens = reply.split(".")
    return int(tokens[4] if len(tokens) == 9 else tokens[6])


class _Inbox(Inbox):
    """Messages delivered to one subscription, waiting for ``__anext__``."""

    def __init__(self, transport: Host, capacity: int = 0) -> None:
        super().__init__(capacity=capacity)
        self.transport = transport
        self.max_payload = transport.capabilities.max_payload
        self.subs: list[Subscription] = []

    async def _confirm(self) -> None:
        """Round trip to the server so that the subscriptions are active when this returns."""
        nc = self.transport.client
        if nc.is_connected:
            await nc.flush()

    async def _unsubscribe(self, drain: bool) -> None:
        nc = self.transport.client
        for sub in self.subs:
            nc.forget_direct(sub)
            with contextlib.suppress(*NATS_ERRORS):
                if drain and nc.is_connected:
                    await sub.drain()  # type: ignore[no-untyped-call]
                else:
                    await sub.unsubscribe()
        self.subs.clear()

    async def _on_request(self, msg: Msg) -> None:
        self._direct_request(msg.subject, msg.reply, msg.data, msg.headers or {})

    def _direct_request(
        self, subject: str, reply: str, data: bytes, headers: dict[str, str]
    ) -> bool:
        self.push(
            Message(
                subject[self.transport.request_skip :],
                data,
                headers,
                key=headers.get(KEY),
                id=headers.get(MESSAGE_ID, ""),
                reply_to=reply or None,
                settler=self,
            )
        )
        return True

    async def _subscribe_requests(self, pattern: str, queue: str) -> None:
        """Requests on ``pattern`` (as queue group ``queue`` where given), delivered directly."""
        nc = self.transport.client
        subject = request_subject(self.transport.options.request_prefix, pattern)
        sub = await nc.subscribe(subject, queue=queue, cb=self._on_request)
        self.subs.append(sub)
        nc.deliver_directly(sub, self._direct_request)

    # -- settling of broadcast messages and requests: nothing to tell the server --------

    async def ack(self, message: Message) -> None:
        """Nothing to do: core NATS messages need no acknowledgement."""

    async def nack(self, message: Message, delay: float | None) -> None:
        """Nothing to do: core NATS keeps nothing to redeliver."""

    async def reject(self, message: Message, reason: str) -> None:
        """Nothing to do for broadcast messages and requests."""

    async def progress(self, message: Message) -> None:
        """Nothing to do: no redelivery timer runs."""

    async def respond(self, message: Message, reply: Envelope) -> None:
        """Send ``reply`` to the requester's inbox."""
        await self.transport.send_reply(reply)


class Broadcast(_Inbox):
    """A core NATS subscription: every live subscriber gets every message."""

    def __init__(self, transport: Host, pattern: str) -> None:
        super().__init__(transport, capacity=transport.options.buffer)
        self.pattern = pattern

    async def start(self) -> None:
        nc = self.transport.client
        try:
            sub = await nc.subscribe(self.pattern, cb=self._on_message)
            self.subs.append(sub)
            nc.deliver_directly(sub, self._direct_message)
            await self._subscribe_requests(self.pattern, "")
            await self._confirm()
        except NATS_ERRORS as exc:
            await self._unsubscribe(False)
            raise translate(exc, "subscribe", self.pattern) from exc

    def _direct_message(
        self, subject: str, reply: str, data: bytes, headers: dict[str, str]
    ) -> bool:
        """A message from the read loop; declined while the buffer is full (it then waits in
        nats-py's queue for ``_on_message``)."""
        queue = self.queue
        if len(queue) >= self.capacity:
            return False
        if len(headers) > 1:
            headers.pop(NATS_MSG_ID, None)
        queue.append(
            Message._received(
                subject,
                data,
                headers,
                headers.get(KEY),
                headers.get(MESSAGE_ID, ""),
                1,
                None,
                self,
                None,
            )
        )
        waiter = self.waiter  # Inbox.push, inlined
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return True

    async def _on_message(self, msg: Msg) -> None:
        headers = msg.headers or {}
        headers.pop(NATS_MSG_ID, None)
        self.push(
            Message(
                msg.subject,
                msg.data,
                headers,
                key=headers.get(KEY),
                id=headers.get(MESSAGE_ID, ""),
                settler=self,
            )
        )
        if self.buffer_full():
            await self.wait_for_room()  # nats-py's queue holds what comes meanwhile

    async def close(self, timeout: float) -> None:
        """Unsubscribe; settling a broadcast message changes nothing, so nothing waits."""
        if self.closing:
            return
        self._stop()
        await self._unsubscribe(False)
        self.transport.forget(self)


class Member(_Inbox):
    """One member of a group: deliveries of the group's JetStream consumer, settled with
    +ACK, -NAK (with delay), +TERM after dead-lettering, +WPI for progress.

    A delivery's token is its reply subject (``$JS.ACK...``): settling publishes the JetStream
    acknowledgement there, as nats-py's ``Msg.ack()`` and friends do."""

    _take = Inbox._track  # a delivery is in flight from when it is handed out

    def __init__(self, transport: Host, consumer: Consumer, group: str) -> None:
        super().__init__(transport)
        self.consumer = consumer
        self.group = group
        self.dead_subject = dead_letter_subject_of(group)
        self.max_deliver = transport.options.max_deliver

    async def start(self) -> None:
        nc = self.transport.client
        consumer = self.consumer
        try:
            sub = await nc.subscribe(
                consumer.deliver_subject, queue=consumer.name, cb=self._on_delivery
            )
            self.subs.append(sub)
            nc.deliver_directly(sub, self._direct_delivery)
            await self._subscribe_requests(consumer.pattern, self.group)
            await self._confirm()
        except NATS_ERRORS as exc:
            await self._unsubscribe(False)
            raise translate(exc, "subscribe", consumer.pattern) from exc

    def _delivery(self, subject: str, reply: str, data: bytes, headers: dict[str, str]) -> Message:
        headers.pop(NATS_MSG_ID, None)
        return Message(
            subject,
            data,
            headers,
            key=headers.get(KEY),
            id=headers.get(MESSAGE_ID, ""),
            attempt=_delivered(reply),
            settler=self,
            token=reply,
        )

    def _direct_delivery(
        self, subject: str, reply: str, data: bytes, headers: dict[str, str]
    ) -> bool:
        """A delivery from the read loop; one to give back or dead-letter is declined and
        handled by ``_on_delivery``, which can wait."""
        if self.closing or not reply:
            return False
        message = self._delivery(subject, reply, data, headers)
        if 0 < self.max_deliver < message.attempt:
            return False
        self.push(message)
        return True

    async def _on_delivery(self, msg: Msg) -> None:
        if not msg.reply:
            return  # not a delivery of the consumer (nothing to settle)
        if self.closing:
            with contextlib.suppress(MeshbusError):
                await self._send(msg.reply, _NAK, "nack", msg.subject)
            return
        message = self._delivery(msg.subject, msg.reply, msg.data, msg.headers or {})
        attempt = message.attempt
        if 0 < self.max_deliver < attempt:
            reason = f"delivered {attempt - 1} times, the group's max_deliver"
            message.attempt = attempt - 1
            with contextlib.suppress(Exception):  # left unacked, it comes again
                await self._dead_letter(message, reason)
            return
        self.push(message)

    async def _send(self, token: str, payload: bytes, op: str, subject: str) -> None:
        """Publish a JetStream acknowledgement (``payload``) to a delivery's reply subject."""
        try:
            await self.transport.client.send(token, payload, None)
        except NATS_ERRORS as exc:
            raise translate(exc, op, subject) from exc

    async def ack(self, message: Message) -> None:
        """+ACK: done with; JetStream will not deliver it to this group again."""
        self._release(message)
        token: str | None = message.token
        if token is not None:
            await self._send(token, _ACK, "ack", message.subject)

    async def nack(self, message: Message, delay: float | None) -> None:
        """-NAK, with JetStream's redelivery delay where given."""
        self._release(message)
        token: str | None = message.token
        if token is not None:
            payload = _NAK
            if delay:
                payload += b" " + json.dumps({"delay": int(delay * 10**9)}).encode()
            await self._send(token, payload, "nack", message.subject)

    async def reject(self, message: Message, reason: str) -> None:
        """Publish to ``dead-letter.<group>`` (confirmed), then +TERM."""
        self._release(message)
        if message.token is not None:
            await self._dead_letter(message, reason)

    async def progress(self, message: Message) -> None:
        """+WPI: restart JetStream's ack_wait timer for this delivery."""
        token: str | None = message.token
        if token is not None and not message.settled:
            await self._send(token, _PROGRESS, "progress", message.subject)

    async def _dead_letter(self, message: Message, reason: str) -> None:
        headers = dead_letter_headers(
            message.headers, message.subject, self.group, reason, message.attempt
        )
        await self.transport.publish_dead_letter(
            self.dead_subject, message.data, headers, f"{message.id}:dead:{self.group}"
        )
        await self._send(message.token, _TERM, "reject", message.subject)

    async def close(self, timeout: float) -> None:
        """Stop deliveries, give back what was not handed out, wait up to ``timeout`` for
        handed-out messages to be settled, then give the rest back (-NAK)."""
        if self.closing:
            return
        give_back = [m for m in self._stop() if m.token is not None]
        await self._unsubscribe(True)
        await self._drain(timeout)
        give_back += self._unsettled()
        for message in give_back:
            with contextlib.suppress(MeshbusError):
                await self._send(message.token, _NAK, "nack", message.subject)
        self.transport.forget(self)
