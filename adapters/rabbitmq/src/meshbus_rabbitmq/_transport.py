"""``amqp://`` — the RabbitMQ channel: one durable topic exchange for every subject; broadcast
subscribers on exclusive auto-delete queues, groups on durable quorum queues (see ``_naming``).
Requests travel on a second topic exchange (``<exchange>.requests``) into classic, non-durable
queues (a group's request queue, or a broadcast queue bound there too), and replies come back
to one exclusive reply queue per connection (see ``_requests``).

The connection is a plain aio-pika connection with its own reconnect layer here: when it drops,
``_reconnect`` dials again with backoff, re-declares the exchanges, a reply queue and the
declared groups, and re-attaches every subscription (a new channel, its queues, bindings and
consumers) before publishes are let through again, so that nothing published after a reconnect
misses a restored subscription. Hot paths (publish, deliver, ack) use the aiormq channel under
aio-pika's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import aio_pika
import aiormq
import aiormq.exceptions
from aio_pika.abc import AbstractChannel, AbstractConnection
from pamqp.commands import Basic

from meshbus.errors import Closed, ConnectionLost, MeshbusError, PublishTimeout
from meshbus.headers import KEY
from meshbus.message import Message
from meshbus.transport import Capabilities, Envelope
from meshbus_rabbitmq._errors import AMQP_ERRORS, translate
from meshbus_rabbitmq._naming import binding_key, delay_queue, group_queue, request_queue
from meshbus_rabbitmq._options import RabbitOptions
from meshbus_rabbitmq._requests import Requests
from meshbus_rabbitmq._subscriptions import Broadcast, Member, Subscription

__all__ = ["DEAD_LETTER_KEEPER", "RabbitTransport"]

log = logging.getLogger("meshbus.rabbitmq")

DEAD_LETTER_KEEPER = "dead-letters"
"""The group that keeps dead letters: ``reject`` declares it on ``dead-letter.<group>`` so that
no dead letter is dropped for want of a subscriber."""
DELAY_QUEUE_IDLE_MS = 30 * 60 * 1000
"""A delay queue disappears this long after its last declare (beyond its own TTL)."""
_RETRYABLE = (aiormq.exceptions.ChannelInvalidStateError, aiormq.exceptions.AMQPConnectionError,
              aiormq.exceptions.ChannelClosed, ConnectionError, OSError)  # fmt: skip
_FOREVER = float("inf")


def quorum_arguments() -> dict[str, Any]:
    """Queue arguments of a group queue."""
    return {"x-queue-type": "quorum"}


class RabbitTransport:
    """The ``amqp://`` channel (see the module docstring and the README's RabbitMQ section)."""

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        self.url = url
        self.options = RabbitOptions.parse(url, options or {})
        self.exchange = self.options.exchange
        self.rpc = Requests(self.exchange)
        self.requests = self.rpc.exchange
        self.capabilities = Capabilities(
            max_payload=self.options.max_payload,
            durable=True,
            ordered_by_key=True,
            no_responders=True,
            reconnects=True,
        )
        self._conn: AbstractConnection | None = None
        self._channels: list[AbstractChannel] = []
        self._pub: aiormq.abc.AbstractChannel | None = None
        self._up = asyncio.Event()
        self._subs: set[Subscription] = set()
        self._groups: dict[str, str] = {}  # queue -> pattern, declared on every (re)connect
        self._delays: set[str] = set()  # delay queues declared on this connection
        self._reconnect_task: asyncio.Task[None] | None = None
        self._closed = False

    # -- connection ------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect; a first connection that fails raises ``ConnectFailed`` at once."""
        try:
            async with asyncio.timeout(self.options.connect_timeout):
                await self._connect()
        except (*AMQP_ERRORS, MeshbusError) as exc:
            host = self.options.url.rpartition("@")[2]
            raise translate(exc, "connect", f"{host}: {exc!r}") from exc

    async def _connect(self) -> None:
        opts = self.options
        kwargs: dict[str, Any] = {"timeout": opts.connect_timeout}
        if opts.tls is not None:
            kwargs["ssl_context"] = opts.tls
        conn = await aio_pika.connect(opts.url, **kwargs)
        try:
            pub = await conn.channel(publisher_confirms=True, on_return_raises=True)
            rpc = await conn.channel(publisher_confirms=False)
            self._channels = [pub, rpc]
            self._pub = await pub.get_underlay_channel()
            await self._pub.exchange_declare(self.exchange, exchange_type="topic", durable=True)
            await self.rpc.declare_exchanges(self._pub)
            await self.rpc.open(await rpc.get_underlay_channel())
            self._conn = conn
            self._delays.clear()
            for queue, pattern in list(self._groups.items()):
                await self._declare_group_queue(queue, pattern)
            for sub in list(self._subs):
                await sub.attach(conn)
            if conn.is_closed:
                raise ConnectionLost("the connection dropped while it was being restored")
            conn.close_callbacks.add(self._on_close)
        except BaseException:
            with contextlib.suppress(*AMQP_ERRORS):
                await conn.close()
            raise
        self._up.set()

    def _on_close(self, sender: Any, exc: BaseException | None) -> None:
        if self._closed or sender is not self._conn:
            return
        log.debug("rabbitmq: connection lost: %r", exc)
        self._up.clear()
        self.rpc.connection_lost()
        if self._reconnect_task is None or self._reconnect_task.done():
            self._reconnect_task = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        """Dial again with backoff until connected (and everything restored) or closed."""
        wait = self.options.reconnect_wait
        while not self._closed:
            await asyncio.sleep(wait)
            try:
                async with asyncio.timeout(self.options.connect_timeout + 30):
                    await self._connect()
                log.debug("rabbitmq: reconnected")
                return
            except (*AMQP_ERRORS, MeshbusError) as exc:
                log.debug("rabbitmq: reconnect failed: %r", exc)
                wait = min(wait * 2, 5.0)

    async def wait_up(self, deadline: float, subject: str) -> None:
        """Wait until connected (``PublishTimeout`` at ``deadline``, loop time)."""
        if self._closed:
            raise Closed(f"{self.url} is closed")
        remaining = deadline - asyncio.get_running_loop().time()
        try:
            async with asyncio.timeout(None if remaining == _FOREVER else max(remaining, 0)):
                await self._up.wait()
        except TimeoutError:
            raise PublishTimeout(
                f"RabbitMQ ({self.options.url.rpartition('@')[2]}) was unreachable; "
                f"{subject!r} not sent"
            ) from None
        if self._closed:
            raise Closed(f"{self.url} is closed")

    @property
    def connection(self) -> AbstractConnection:
        """The aio-pika connection (``Closed`` before start and after close)."""
        if self._conn is None or self._closed:
            raise Closed(f"{self.url} is not connected")
        return self._conn

    # -- publishing ------------------------------------------------------------------------

    @staticmethod
    def properties(envelope: Envelope) -> Basic.Properties:
        """AMQP properties of an outgoing message: persistent, id, headers."""
        headers: dict[str, Any] = envelope.headers
        if envelope.key is not None:
            headers = {**headers, KEY: envelope.key}
        return Basic.Properties(headers=headers, delivery_mode=2, message_id=envelope.id)

    async def publish(self, envelope: Envelope, timeout: float | None) -> None:
        """Persistent publish to the exchange, returning on the broker's confirm; waits out a
        reconnect up to ``timeout``."""
        pub = self._pub
        if self._up.is_set() and pub is not None and timeout is None:
            try:
                await pub.basic_publish(
                    envelope.data,
                    exchange=self.exchange,
                    routing_key=envelope.subject,
                    properties=self.properties(envelope),
                )
                return
            except _RETRYABLE:
                pass
        await self.publish_many([envelope], timeout)

    async def publish_many(self, envelopes: Sequence[Envelope], timeout: float | None) -> None:
        """Publish all on one channel (publish order kept), confirms awaited together; what a
        lost connection left unconfirmed is published again after the reconnect, until
        ``timeout``."""
        items = [(e.subject, e.data, self.properties(e)) for e in envelopes]
        await self.send(items, self.exchange, timeout)

    async def send(
        self, items: list[tuple[str, bytes, Basic.Properties]], exchange: str, timeout: float | None
    ) -> None:
        """Publish ``(routing key, body, properties)`` items with confirms (see
        ``publish_many``)."""
        loop = asyncio.get_running_loop()
        deadline = _FOREVER if timeout is None else loop.time() + timeout
        while items:
            if not self._up.is_set():
                await self.wait_up(deadline, items[0][0])
            pub = self._pub
            assert pub is not None
            remaining = None if deadline == _FOREVER else max(deadline - loop.time(), 0)
            try:
                async with asyncio.timeout(remaining):
                    results = await asyncio.gather(
                        *(
                            pub.basic_publish(
                                body, exchange=exchange, routing_key=key, properties=props
                            )
                            for key, body, props in items
                        ),
                        return_exceptions=True,
                    )
            except TimeoutError as exc:
                raise PublishTimeout(
                    f"RabbitMQ did not confirm {len(items)} message(s) within {timeout:g} s "
                    f"(first: {items[0][0]!r})"
                ) from exc
            failed = []
            for item, result in zip(items, results, strict=True):
                if isinstance(result, (*_RETRYABLE, asyncio.CancelledError)):
                    failed.append(item)
                elif isinstance(result, BaseException):
                    raise translate(result, "publish", item[0], timeout or 0) from result
                elif isinstance(result, Basic.Nack):
                    raise translate(aiormq.exceptions.DeliveryError(None, result), "publish",
                                    item[0])  # fmt: skip
            items = failed
            if items:
                if loop.time() >= deadline:
                    raise ConnectionLost(f"RabbitMQ connection lost; {items[0][0]!r} not sent")
                await asyncio.sleep(0.05)

    # -- groups, delays, dead letters ------------------------------------------------------

    async def _on_admin_channel(self, queue: str, pattern: str | None, arguments: dict[str, Any],
                                durable: bool = True) -> None:  # fmt: skip
        """Declare ``queue`` (and bind it to ``pattern``) on a channel of its own, so that a
        refusal (an existing queue of another kind) cannot close a shared channel."""
        channel = await self.connection.channel(publisher_confirms=False)
        try:
            ch = await channel.get_underlay_channel()
            await ch.queue_declare(queue, durable=durable, arguments=arguments)
            if pattern is not None:
                await ch.queue_bind(queue, self.exchange, routing_key=binding_key(pattern))
        finally:
            with contextlib.suppress(*AMQP_ERRORS):
                await channel.close()

    async def _declare_group_queue(self, queue: str, pattern: str) -> None:
        await self._on_admin_channel(queue, pattern, quorum_arguments())

    def group_queue(self, pattern: str, group: str) -> str:
        """The quorum queue of ``group`` on ``pattern``."""
        return group_queue(self.options.queue_prefix, self.exchange, group, pattern)

    async def declare_group(self, pattern: str, group: str) -> None:
        """Create the group's durable quorum queue, bound to ``pattern``, so that it keeps
        messages before any member subscribes."""
        queue = self.group_queue(pattern, group)
        if not self._up.is_set():
            await self.wait_up(asyncio.get_running_loop().time() + 30, pattern)
        try:
            await self._declare_group_queue(queue, pattern)
        except AMQP_ERRORS as exc:
            raise translate(exc, "declare_group", pattern) from exc
        self._groups[queue] = pattern

    async def publish_dead_letter(self, subject: str, data: bytes, headers: dict[str, Any],
                                  msg_id: str) -> None:  # fmt: skip
        """Publish a dead letter (persistent, confirmed), declaring the keeper group first."""
        queue = self.group_queue(subject, DEAD_LETTER_KEEPER)
        if queue not in self._groups:
            await self.declare_group(subject, DEAD_LETTER_KEEPER)
        props = Basic.Properties(headers=headers, delivery_mode=2, message_id=msg_id)
        await self.send([(subject, data, props)], self.exchange, self.options.confirm_timeout * 3)

    async def publish_delayed(self, target: str, delay: float, data: bytes,
                              props: Basic.Properties) -> None:  # fmt: skip
        """Park a message in the TTL queue for ``delay`` (ms granularity) that dead-letters
        back into the group queue ``target``."""
        delay_ms = max(1, round(delay * 1000))
        queue = delay_queue(target, delay_ms)
        if queue not in self._delays:
            arguments = {
                "x-message-ttl": delay_ms,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": target,
                "x-expires": delay_ms + DELAY_QUEUE_IDLE_MS,
            }
            try:
                await self._on_admin_channel(queue, None, arguments)
            except AMQP_ERRORS as exc:
                raise translate(exc, "nack", target) from exc
            self._delays.add(queue)
        await self.send([(queue, data, props)], "", self.options.confirm_timeout * 3)

    # -- subscribing -----------------------------------------------------------------------

    async def subscribe(self, pattern: str, group: str | None, prefetch: int) -> Subscription:
        """A broadcast subscription, or a member of ``group``; active when this returns."""
        sub: Subscription
        if group is None:
            sub = Broadcast(self, pattern, prefetch)
        else:
            queue = self.group_queue(pattern, group)
            requests = request_queue(self.options.queue_prefix, self.exchange, group, pattern)
            sub = Member(self, pattern, prefetch, group, queue, requests)
            self._groups[queue] = pattern
        if not self._up.is_set():
            await self.wait_up(asyncio.get_running_loop().time() + 30, pattern)
        try:
            await sub.attach(self.connection)
        except AMQP_ERRORS as exc:
            await sub.detach()
            raise translate(exc, "subscribe", pattern) from exc
        self._subs.add(sub)
        return sub

    def forget(self, sub: Subscription) -> None:
        """A subscription closed."""
        self._subs.discard(sub)

    # -- request / reply -------------------------------------------------------------------

    async def request(self, envelope: Envelope, timeout: float) -> Message:
        """Send a request and wait for its reply (see ``_requests``), after waiting out a
        reconnect until ``timeout``."""
        deadline = asyncio.get_running_loop().time() + timeout
        if not self._up.is_set():
            await self.wait_up(deadline, envelope.subject)
        return await self.rpc.ask(envelope, timeout, deadline)

    async def send_reply(self, reply: Envelope, correlation_id: str) -> None:
        """Send a reply to its asker's reply queue."""
        if not self._up.is_set():
            await self.wait_up(asyncio.get_running_loop().time() + 5, reply.subject)
        await self.rpc.reply(reply, correlation_id)

    # -- closing ---------------------------------------------------------------------------

    def health(self) -> Literal["connecting", "connected", "reconnecting", "closed"]:
        """Connected while the connection and its channels are up; reconnecting between a
        loss and their restoration (``meshbus.transport.ReportsHealth``)."""
        if self._closed:
            return "closed"
        if self._up.is_set():
            return "connected"
        return "reconnecting" if self._conn is not None else "connecting"

    async def close(self, timeout: float) -> None:
        """Drain subscriptions (up to ``timeout``), then disconnect. Idempotent."""
        if self._closed:
            return
        subs = list(self._subs)
        await asyncio.gather(*(sub.close(timeout) for sub in subs), return_exceptions=True)
        self._closed = True
        self._up.set()  # wake waiters: they see _closed
        if self._reconnect_task is not None:
            self._reconnect_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnect_task
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(*AMQP_ERRORS):
                await conn.close()
