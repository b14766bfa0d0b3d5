"""Request/reply of the ``amqp://`` channel.

Requests travel on their own topic exchange (``<exchange>.requests``, bound with the subjects'
binding keys) into classic, non-durable queues: a group's request queue, or a broadcast
subscriber's queue bound there too. They are live, their asker waits, so they stay out of the
groups' quorum queues and their Raft log. They go without publisher confirms: the reply is the
answer. Replies come to one exclusive, server-named reply queue per connection, matched to
their request by correlation id.

A request that no queue takes goes to the request exchange's alternate exchange
(``<exchange>.requests.unrouted``, a headers exchange) where each reply queue is bound on its
own name. The request carries that name in :data:`ASKER`, so it comes straight back to its
asker, which raises ``NoResponders``: what ``mandatory`` and a confirm per request would give,
without waiting for a confirm.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiormq.abc
from pamqp.commands import Basic

from meshbus.errors import ConnectionLost, NoResponders, RequestTimeout
from meshbus.headers import KEY
from meshbus.message import Message
from meshbus.transport import Envelope
from meshbus_rabbitmq._errors import AMQP_ERRORS, translate
from meshbus_rabbitmq._naming import request_exchange, unrouted_exchange

__all__ = ["ASKER", "Requests"]

ASKER = "mb-asker"
"""On a request: the asker's reply queue, on which the alternate exchange routes a request that
no queue took back to its asker."""


class Requests:
    """Requests of one ``amqp://`` transport: the exchanges they travel on, this connection's
    reply queue, and the requests waiting for a reply."""

    def __init__(self, exchange: str) -> None:
        self.exchange = request_exchange(exchange)
        """The topic exchange requests are published to."""
        self.unrouted = unrouted_exchange(exchange)
        self._ch: aiormq.abc.AbstractChannel | None = None
        self._reply_to = ""
        self._waiting: dict[str, asyncio.Future[Message]] = {}

    async def declare_exchanges(self, ch: aiormq.abc.AbstractChannel) -> None:
        """The request exchange and its alternate exchange."""
        await ch.exchange_declare(self.unrouted, exchange_type="headers", durable=True)
        await ch.exchange_declare(self.exchange, exchange_type="topic", durable=True,
                                  arguments={"alternate-exchange": self.unrouted})  # fmt: skip

    async def open(self, ch: aiormq.abc.AbstractChannel) -> None:
        """Use ``ch`` (a channel without confirms) for requests and replies: declare this
        connection's reply queue, bind it to the alternate exchange on its own name, consume
        it."""
        declared = await ch.queue_declare("", exclusive=True, auto_delete=True)
        name = declared.queue or ""
        await ch.queue_bind(name, self.unrouted,
                            arguments={"x-match": "all", ASKER: name})  # fmt: skip
        await ch.basic_consume(name, self._on_reply, no_ack=True)
        self._ch, self._reply_to = ch, name

    def connection_lost(self) -> None:
        """Fail every request waiting for a reply: the reply queue is gone."""
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(ConnectionLost("the RabbitMQ connection was lost"))

    async def ask(self, envelope: Envelope, timeout: float, deadline: float) -> Message:
        """Publish the request and wait for its reply until ``deadline`` (loop time); the
        request expires from queues after ``timeout``."""
        ch = self._ch
        assert ch is not None
        subject = envelope.subject
        headers: dict[str, Any] = {**envelope.headers, ASKER: self._reply_to}
        if envelope.key is not None:
            headers[KEY] = envelope.key
        props = Basic.Properties(
            headers=headers, message_id=envelope.id, correlation_id=envelope.id,
            reply_to=self._reply_to, expiration=str(max(1, int(timeout * 1000))), delivery_mode=1,
        )  # fmt: skip
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._waiting[envelope.id] = future
        try:
            async with asyncio.timeout_at(deadline):
                await ch.basic_publish(
                    envelope.data, exchange=self.exchange, routing_key=subject, properties=props,
                )  # fmt: skip
                return await future
        except TimeoutError as exc:
            raise RequestTimeout(subject, timeout) from exc
        except AMQP_ERRORS as exc:
            raise translate(exc, "request", subject, timeout) from exc
        finally:
            self._waiting.pop(envelope.id, None)

    async def _on_reply(self, delivered: aiormq.abc.DeliveredMessage) -> None:
        props = delivered.header.properties
        future = self._waiting.get(props.correlation_id or "")
        if future is None or future.done():
            return
        headers: dict[str, Any] = props.headers or {}
        if ASKER in headers:  # our own request, back from the alternate exchange
            future.set_exception(NoResponders(delivered.routing_key or ""))
            return
        future.set_result(
            Message(delivered.routing_key or "", delivered.body, headers, id=props.message_id or "")
        )

    async def reply(self, reply: Envelope, correlation_id: str) -> None:
        """Send ``reply`` to its asker's reply queue (``reply.subject``), without a confirm:
        nothing but the asker waits for it."""
        ch = self._ch
        assert ch is not None
        headers: dict[str, Any] = reply.headers
        props = Basic.Properties(headers=headers, correlation_id=correlation_id)
        try:
            await ch.basic_publish(reply.data, exchange="", routing_key=reply.subject,
                                   properties=props)  # fmt: skip
        except AMQP_ERRORS as exc:
            raise translate(exc, "respond", reply.subject) from exc
