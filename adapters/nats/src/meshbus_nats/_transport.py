"""``nats://`` — the NATS channel: core NATS for broadcast and request/reply, JetStream for
durable groups (see ``_naming`` for the names of streams and consumers, ``_streams`` for
where they come from).

A publish to a subject that a stream captures goes through JetStream and returns on its PubAck;
core subscribers of the subject see it too, since JetStream stores what is published on core
NATS. A publish to a subject no stream captures is a core NATS publish: it returns once handed
to the connection, and nothing keeps it for absent subscribers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from time import monotonic
from typing import Any, Literal

from nats.js import JetStreamContext

from meshbus.errors import Closed, MeshbusError, PayloadTooLarge, PublishTimeout
from meshbus.headers import KEY, MESSAGE_ID
from meshbus.kit import BoundedCache
from meshbus.message import Message
from meshbus.transport import Capabilities, Envelope
from meshbus_nats._errors import NATS_ERRORS, translate
from meshbus_nats._naming import request_subject
from meshbus_nats._options import NatsOptions
from meshbus_nats._requests import Batch, Item, NoStream, PubAcks, Replies
from meshbus_nats._streams import ensure_consumer, ensure_stream, find_stream
from meshbus_nats._subscriptions import Broadcast, Member
from meshbus_nats._wire import NATS_MSG_ID, MeshClient

__all__ = ["NatsTransport"]

log = logging.getLogger("meshbus.nats")

HEADROOM = 256
"""Bytes of the server's max_payload kept for meshbus's own headers (id, Nats-Msg-Id)."""
DEFAULT_MAX_ACK_PENDING = 256
NOT_COVERED_TTL = 5.0
"""Seconds a "no stream captures this subject" answer is trusted before asking again."""
_FOREVER = float("inf")


class NatsTransport:
    """The ``nats://`` channel (see the module docstring and the README's NATS section)."""

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        self.url = url
        self.options = NatsOptions.parse(url, options or {})
        self.capabilities = Capabilities(
            max_payload=1024 * 1024 - HEADROOM,
            durable=True,
            ordered_by_key=True,
            no_responders=True,
            reconnects=True,
        )
        self.request_prefix = request_subject(self.options.request_prefix, "")
        """``<request_prefix>.``: requests travel on it followed by their subject."""
        self.request_skip = len(self.request_prefix)
        self._nc: MeshClient | None = None
        self._js: JetStreamContext | None = None
        self._acks: PubAcks | None = None
        self._replies: Replies | None = None
        self._up = asyncio.Event()
        self._server_max = 1024 * 1024
        self._covered: BoundedCache[str, tuple[str, float]] = BoundedCache()
        """Subject -> (the stream capturing it or "", until when that answer is trusted)."""
        self._groups: dict[tuple[str, str], int] = {}
        self._subs: set[Broadcast | Member] = set()
        self._restore: asyncio.Task[None] | None = None
        self._last_error: Exception | None = None
        self._closed = False

    # -- connection ------------------------------------------------------------------------

    @property
    def client(self) -> MeshClient:
        """The nats-py client (``Closed`` before start and after close)."""
        if self._nc is None or self._closed:
            raise Closed(f"{self.url} is not connected")
        return self._nc

    async def start(self) -> None:
        """Connect; a first connection that fails raises ``ConnectFailed`` at once."""
        opts = self.options
        nc = MeshClient()
        kwargs: dict[str, Any] = {
            "servers": opts.servers,
            # Fail fast on the first connect (nats-py tries each server twice, then gives up);
            # reconnecting forever is switched on once connected.
            "allow_reconnect": False,
            "max_reconnect_attempts": 1,
            "reconnect_time_wait": opts.reconnect_wait,
            "connect_timeout": opts.connect_timeout,
            "error_cb": self._on_error,
            "disconnected_cb": self._on_disconnected,
            "reconnected_cb": self._on_reconnected,
        }
        if opts.tls is not None:
            kwargs["tls"] = opts.tls
        kwargs.update(opts.client_options)
        try:
            await nc.connect(**kwargs)
        except NATS_ERRORS as exc:
            with contextlib.suppress(*NATS_ERRORS):
                await nc.close()
            cause = self._last_error or exc
            servers = ", ".join(opts.servers)
            raise translate(cause, "connect", f"{servers}: {cause}") from cause
        nc.options["allow_reconnect"] = True
        nc.options["max_reconnect_attempts"] = -1
        self._nc = nc
        self._js = nc.jetstream()
        self._acks = PubAcks(nc)
        await self._acks.start()
        self._replies = Replies(nc)
        await self._replies.start()
        self._server_max = nc.max_payload
        self.capabilities = replace(self.capabilities, max_payload=nc.max_payload - HEADROOM)
        self._up.set()

    async def _on_error(self, exc: Exception) -> None:
        self._last_error = exc
        log.debug("nats: %r", exc)

    async def _on_disconnected(self) -> None:
        self._up.clear()

    async def _on_reconnected(self) -> None:
        self._covered.clear()
        self._up.set()
        if self._groups and (self._restore is None or self._restore.done()):
            self._restore = asyncio.create_task(self._restore_groups())

    async def _restore_groups(self) -> None:
        """Make sure streams and consumers exist again (a server that lost its store)."""
        for (pattern, group), pending in list(self._groups.items()):
            for _ in range(20):
                try:
                    await self._ensure_group(pattern, group, pending)
                    break
                except MeshbusError:
                    await asyncio.sleep(0.5)

    async def _wait_up(self, timeout: float | None, subject: str) -> None:
        if self._closed:
            raise Closed(f"{self.url} is closed")
        try:
            async with asyncio.timeout(timeout):
                await self._up.wait()
        except TimeoutError:
            raise PublishTimeout(
                f"NATS ({self.url}) was unreachable for {timeout:g} s; {subject!r} not sent"
            ) from None

    # -- publishing ------------------------------------------------------------------------

    def _headers(self, envelope: Envelope) -> dict[str, str]:
        headers = {MESSAGE_ID: envelope.id}
        if envelope.headers or envelope.key is not None:
            headers.update(envelope.headers)
            if envelope.key is not None:
                headers[KEY] = envelope.key
            size = len(envelope.data) + 2 * len(envelope.id) + 64
            size += sum(len(k) + len(v.encode()) + 4 for k, v in headers.items())
            if size > self._server_max:
                raise PayloadTooLarge(size, self._server_max, envelope.subject)
        return headers

    def _item(self, envelope: Envelope) -> Item:
        """A JetStream publish of ``envelope``, de-duplicated by its id (``Nats-Msg-Id``)."""
        if not envelope.headers and envelope.key is None:
            return (envelope.subject, envelope.data, None, envelope.id)
        headers = self._headers(envelope)
        headers[NATS_MSG_ID] = envelope.id
        return (envelope.subject, envelope.data, headers, envelope.id)

    async def _stream_for(self, subject: str, timeout: float | None) -> str:
        """The stream capturing ``subject`` ("" for none), cached."""
        found = self._covered.get(subject)
        if found is not None and found[1] > monotonic():
            return found[0]
        await self._wait_up(timeout, subject)
        assert self._js is not None
        try:
            async with asyncio.timeout(timeout):
                stream = await find_stream(self._js, subject) or ""
        except TimeoutError as exc:
            raise translate(exc, "publish", subject, timeout or 0) from None
        ttl = _FOREVER if stream else NOT_COVERED_TTL
        self._covered.put(subject, (stream, monotonic() + ttl))
        return stream

    async def publish(self, envelope: Envelope, timeout: float | None) -> None:
        """JetStream publish confirmed by PubAck where a stream captures the subject; a core
        publish otherwise. Waits out a reconnect up to ``timeout``."""
        subject = envelope.subject
        found = self._covered.get(subject)
        if found is None or found[1] <= monotonic():
            stream = await self._stream_for(subject, timeout)
        else:
            stream = found[0]
        if stream:
            await self._js_publish([self._item(envelope)], timeout)
            return
        if not self._up.is_set():
            await self._wait_up(timeout, subject)
        try:
            if envelope.headers or envelope.key is not None:
                await self.client.send(subject, envelope.data, self._headers(envelope))
            else:
                await self.client.send_id(subject, envelope.data, envelope.id)
        except NATS_ERRORS as exc:
            raise translate(exc, "publish", subject, timeout or 0) from exc

    async def publish_many(self, envelopes: Sequence[Envelope], timeout: float | None) -> None:
        """Publish all, with every JetStream PubAck awaited together."""
        durable: list[Item] = []
        nc = self.client
        for envelope in envelopes:
            subject = envelope.subject
            if await self._stream_for(subject, timeout):
                durable.append(self._item(envelope))
                continue
            if not self._up.is_set():
                await self._wait_up(timeout, subject)
            try:
                if envelope.headers or envelope.key is not None:
                    await nc.send(subject, envelope.data, self._headers(envelope))
                else:
                    await nc.send_id(subject, envelope.data, envelope.id)
            except NATS_ERRORS as exc:
                raise translate(exc, "publish", subject, timeout or 0) from exc
        if durable:
            await self._js_publish(durable, timeout)

    async def _js_publish(self, items: list[Item], timeout: float | None) -> None:
        """Publish to JetStream and wait for every PubAck; publish again what was not
        confirmed (the same Nats-Msg-Id, so JetStream stores it once) until ``timeout``."""
        acks = self._acks
        assert acks is not None
        loop = asyncio.get_running_loop()
        deadline = _FOREVER if timeout is None else loop.time() + timeout
        while True:
            if not self._up.is_set():
                await self._wait_up(None if timeout is None else deadline - loop.time(), "")
            batch = Batch(len(items))
            tokens: list[str] = []
            try:
                for index, item in enumerate(items):
                    tokens.append(await acks.send(item, batch, index))
            except NATS_ERRORS as exc:
                for token in tokens:
                    acks.pending.pop(token, None)
                raise translate(exc, "publish", items[0][0], timeout or 0) from exc
            wait = min(deadline, loop.time() + self.options.ack_timeout) - loop.time()
            if batch.left:
                await asyncio.wait([batch.done], timeout=max(wait, 0))
            failed: list[Item] = []
            for item, token, result in zip(items, tokens, batch.results, strict=True):
                if result is None:
                    acks.pending.pop(token, None)
                    failed.append(item)
                elif result is not True:
                    assert isinstance(result, BaseException)
                    if not isinstance(result, NoStream):
                        raise translate(result, "publish", item[0]) from result
                    failed.append(item)
            if not failed:
                return
            if loop.time() >= deadline:
                raise PublishTimeout(
                    f"JetStream confirmed {len(items) - len(failed)} of {len(items)} messages "
                    f"within {timeout:g} s (first unconfirmed: {failed[0][0]!r})"
                )
            items = failed
            await asyncio.sleep(min(0.2, max(deadline - loop.time(), 0)))

    async def publish_dead_letter(
        self, subject: str, data: bytes, headers: dict[str, str], msg_id: str
    ) -> None:
        """Publish a dead letter to JetStream (its stream is created if missing)."""
        assert self._js is not None
        stream = await ensure_stream(self._js, subject, self.options.stream_prefix)
        self._covered.put(subject, (stream, _FOREVER))
        headers[NATS_MSG_ID] = msg_id
        await self._js_publish([(subject, data, headers, msg_id)], self.options.ack_timeout * 6)

    async def send_reply(self, reply: Envelope) -> None:
        """Send a reply to a requester's inbox (core NATS)."""
        headers = self._headers(reply) if reply.headers else None
        if headers is not None:
            del headers[MESSAGE_ID]
        try:
            await self.client.send_now(reply.subject, reply.data, headers)
        except NATS_ERRORS as exc:
            raise translate(exc, "respond", reply.subject) from exc

    # -- subscribing -----------------------------------------------------------------------

    async def _ensure_group(self, pattern: str, group: str, max_ack_pending: int) -> Member:
        js = self._js
        if js is None or self._closed:
            raise Closed(f"{self.url} is not connected")
        stream = await ensure_stream(js, pattern, self.options.stream_prefix)
        self._covered.clear()
        consumer = await ensure_consumer(
            js,
            stream,
            group,
            pattern,
            ack_wait=self.options.ack_wait,
            max_ack_pending=max_ack_pending,
        )
        self._groups.setdefault((pattern, group), max_ack_pending)
        return Member(self, consumer, group)

    async def subscribe(self, pattern: str, group: str | None, prefetch: int) -> Broadcast | Member:
        """A broadcast (core) subscription, or a member of ``group`` (JetStream)."""
        sub: Broadcast | Member
        if group is None:
            sub = Broadcast(self, pattern)
        else:
            sub = await self._ensure_group(pattern, group, prefetch)
        await sub.start()
        self._subs.add(sub)
        return sub

    async def declare_group(self, pattern: str, group: str) -> None:
        """Create the group's stream and durable consumer so that it keeps messages."""
        await self._ensure_group(pattern, group, DEFAULT_MAX_ACK_PENDING)

    def forget(self, sub: Broadcast | Member) -> None:
        """A subscription closed."""
        self._subs.discard(sub)

    # -- request / reply -------------------------------------------------------------------

    async def request(self, envelope: Envelope, timeout: float) -> Message:
        """A core NATS request on ``<request_prefix>.<subject>``; NATS's no-responders
        status raises ``NoResponders``."""
        headers = self._headers(envelope)
        subject = envelope.subject
        if not self._up.is_set():
            await self._wait_up(timeout, subject)
        assert self._replies is not None
        try:
            return await self._replies.ask(
                self.request_prefix + subject, envelope.data, headers, timeout
            )
        except NATS_ERRORS as exc:
            raise translate(exc, "request", subject, timeout) from exc

    # -- closing ---------------------------------------------------------------------------

    def health(self) -> Literal["connecting", "connected", "reconnecting", "closed"]:
        """What nats-py says of its connection (``meshbus.transport.ReportsHealth``)."""
        nc = self._nc
        if self._closed:
            return "closed"
        if nc is None:
            return "connecting"
        if nc.is_connected:
            return "connected"
        return "closed" if nc.is_closed else "reconnecting"

    async def close(self, timeout: float) -> None:
        """Drain subscriptions (up to ``timeout``), flush, disconnect. Idempotent."""
        if self._closed or self._nc is None:
            self._closed = True
            return
        subs = list(self._subs)
        await asyncio.gather(*(sub.close(timeout) for sub in subs), return_exceptions=True)
        self._closed = True
        if self._restore is not None:
            self._restore.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._restore
        nc = self._nc
        if nc.is_connected:
            with contextlib.suppress(*NATS_ERRORS):
                await nc.flush(timeout=max(1, int(timeout) + 1))
        with contextlib.suppress(*NATS_ERRORS):
            await nc.close()
