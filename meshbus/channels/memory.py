"""``memory://name`` — the in-process channel.

Every bus connected to the same ``memory://name`` in one process shares one in-process broker,
which lives while at least one of those buses is open. It keeps the whole contract, so it is
both the channel for single-process apps and the test double for code written against meshbus:

- broadcast subscribers each get every message published after they subscribed; a subscriber
  holds at most ``buffer`` undelivered messages (URL option, default 10000) and a publisher
  waits for room (up to its timeout) rather than dropping or growing memory; settling a
  broadcast message only marks it done, and closing does not wait for it;
- groups are durable for the broker's lifetime: they exist from their first subscription or
  ``declare_group``, keep messages while no member is subscribed, and redeliver anything a
  member nacks or leaves unsettled, counting ``attempt``;
- a group is one FIFO queue, so messages with one key keep their publish order;
- ``request()`` raises ``NoResponders`` at once when nothing subscribes to the subject.

URL options: ``memory://app?max_payload=8388608&buffer=10000``.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol
from urllib.parse import parse_qs

from meshbus.config import parse_url
from meshbus.errors import Closed, InvalidURL, NoResponders, PublishTimeout, RequestTimeout
from meshbus.headers import (
    CORRELATION_ID,
    REPLY_TO,
    dead_letter_headers,
    dead_letter_subject,
)
from meshbus.message import Message
from meshbus.subjects import SubjectIndex
from meshbus.transport import Capabilities, Envelope

__all__ = ["MemoryTransport"]

DEFAULT_MAX_PAYLOAD = 8 * 1024 * 1024
DEFAULT_BUFFER = 10_000

_new = object.__new__
_hubs: weakref.WeakValueDictionary[str, _Hub] = weakref.WeakValueDictionary()


class Wakeable(Protocol):
    """What waits for a message in a group or for room in a member's prefetch: an
    ``asyncio.Future`` a task awaits, or a callback object (push delivery, see
    ``_Member.poll``)."""

    def done(self) -> bool:
        """True once woken (or given up)."""

    def set_result(self, result: None, /) -> None:
        """Wake it; ``asyncio.InvalidStateError`` if it is done."""


def _wake_first(waiters: deque[Wakeable]) -> None:
    while waiters:
        try:  # not asking done() first: a done waiter (cancelled, fired) says so by raising
            waiters.popleft().set_result(None)
        except asyncio.InvalidStateError:
            continue
        return


class _Entry:
    """A message queued for one group, with its delivery count in that group; ``on_take`` (if
    set) is called when a member first takes it."""

    __slots__ = ("attempt", "envelope", "on_take", "reply")

    def __init__(
        self,
        envelope: Envelope,
        attempt: int = 0,
        on_take: Callable[[], None] | None = None,
        reply: ReplyRoute | None = None,
    ) -> None:
        self.envelope = envelope
        self.attempt = attempt
        self.on_take = on_take
        self.reply = reply
        """Where the reply to a request goes, when its queuer said so itself (else it is
        found by the request's reply-to token in ``_Hub.pending``)."""


class ReplyWaiter(Protocol):
    """Where ``respond`` puts the reply to a request: an ``asyncio.Future``, or anything that
    can be completed the same way."""

    def done(self) -> bool:
        """True once a reply was set."""

    def set_result(self, result: Envelope, /) -> None:
        """Hand over the reply."""


class ReplyRoute(ReplyWaiter, Protocol):
    """A request's reply route that its queuer gave with it (``_Entry.reply``)."""

    def send(self, data: bytes, /) -> None:
        """Hand over a reply of ``data`` without headers, unless a reply was set already."""


def _deliver(envelope: Envelope, attempt: int, settler: Any, token: Any) -> Message:
    headers = envelope.headers
    return Message._received(
        envelope.subject,
        envelope.data,
        dict(headers),
        envelope.key,
        envelope.id,
        attempt,
        headers.get(REPLY_TO),
        settler,
        token,
    )


class _Hub:
    """The in-process broker behind one ``memory://name``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.broadcast: SubjectIndex[_Broadcast] = SubjectIndex()
        self.groups: dict[tuple[str, str], _Group] = {}
        self.group_index: SubjectIndex[_Group] = SubjectIndex()
        self.pending: dict[str, ReplyWaiter] = {}
        self.request_ids = 0

    def group(self, pattern: str, name: str) -> _Group:
        group = self.groups.get((pattern, name))
        if group is None:
            group = self.groups[(pattern, name)] = _Group(self, pattern, name)
            self.group_index.add(pattern, group)
        return group

    def subscriber(
        self, pattern: str, group: str | None, max_payload: int, prefetch: int, buffer: int
    ) -> _Member | _Broadcast:
        """A new member of ``group`` on ``pattern``, or (no group) a broadcast subscriber."""
        if group is None:
            sub = _Broadcast(self, pattern, max_payload, prefetch, buffer)
            self.broadcast.add(pattern, sub)
            return sub
        return _Member(self.group(pattern, group), max_payload, prefetch)

    def remove_group(self, pattern: str, name: str) -> None:
        """Forget a group and whatever it still holds."""
        group = self.groups.pop((pattern, name), None)
        if group is not None:
            self.group_index.remove(pattern, group)

    def route(self, envelope: Envelope) -> list[_Broadcast]:
        """Queue ``envelope`` for every group and broadcast subscriber it matches; return the
        broadcast subscribers whose buffers were full."""
        subject = envelope.subject
        for group in self.group_index.lookup(subject):
            group.put(_Entry(envelope))
        full: list[_Broadcast] = []
        for sub in self.broadcast.lookup(subject):
            if not sub.offer(envelope):
                full.append(sub)
        return full

    async def publish(self, envelope: Envelope, timeout: float | None) -> None:
        full = self.route(envelope)
        if full:
            try:
                async with asyncio.timeout(timeout):
                    for sub in full:
                        await sub.put(envelope)
            except TimeoutError:
                raise PublishTimeout(
                    f"a broadcast subscriber of {envelope.subject!r} stayed full for "
                    f"{timeout:g} s; the message reached the others"
                ) from None

    def has_responders(self, subject: str) -> bool:
        return bool(self.group_index.lookup(subject) or self.broadcast.lookup(subject))


class _Group:
    """A durable group: one FIFO queue shared by its members."""

    def __init__(self, hub: _Hub, pattern: str, name: str) -> None:
        self.hub = hub
        self.pattern = pattern
        self.name = name
        self.queue: deque[_Entry] = deque()
        self.waiters: deque[Wakeable] = deque()

    def put(self, entry: _Entry) -> None:
        self.queue.append(entry)
        if self.waiters:
            _wake_first(self.waiters)

    def put_back(self, entries: list[_Entry]) -> None:
        self.queue.extendleft(reversed(entries))
        for _ in entries:
            _wake_first(self.waiters)


class _Subscriber:
    """What group members and broadcast subscribers share: delivery, settling, draining."""

    def __init__(self, hub: _Hub, max_payload: int, prefetch: int) -> None:
        self.hub = hub
        self.max_payload = max_payload
        self.prefetch = prefetch
        self.in_flight: dict[int, _Entry] = {}
        self.closing = False
        self.waiter: Wakeable | None = None
        # Kept: asyncio.get_running_loop() costs a getpid() system call each time.
        self._loop = asyncio.get_running_loop()
        self.drained: asyncio.Event | None = None
        self.on_close: Callable[[], Awaitable[None]] | None = None
        """Awaited once the subscriber has closed (the direct listener withdraws its
        interest)."""

    def __aiter__(self) -> _Subscriber:
        return self

    async def __anext__(self) -> Message:
        raise NotImplementedError

    def _wake_self(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def _wait(self, extra: deque[Wakeable] | None) -> None:
        waiter = self.waiter = self._loop.create_future()
        if extra is not None:
            extra.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and extra is not None:
                _wake_first(extra)  # pass on a wake-up we can no longer use
            raise
        finally:
            self.waiter = None

    def _settled(self, message: Message) -> _Entry | None:
        in_flight = self.in_flight
        entry = in_flight.pop(id(message.token), None)
        if len(in_flight) + 1 == self.prefetch and not self.closing:
            self._wake_self()
        if self.drained is not None and not in_flight:
            self.drained.set()
        return entry

    async def ack(self, message: Message) -> None:
        # _settled, written out: ack is the settle of nearly every message.
        in_flight = self.in_flight
        in_flight.pop(id(message.token), None)
        if len(in_flight) + 1 == self.prefetch and not self.closing:
            self._wake_self()
        if self.drained is not None and not in_flight:
            self.drained.set()

    async def nack(self, message: Message, delay: float | None) -> None:
        self._settled(message)

    async def reject(self, message: Message, reason: str) -> None:
        self._settled(message)

    async def progress(self, message: Message) -> None:
        return None

    async def respond(self, message: Message, reply: Envelope) -> None:
        future = message.token.reply
        if future is None:
            future = self.hub.pending.get(message.reply_to or "")
        if future is not None and not future.done():
            future.set_result(reply)

    async def _drain(self, timeout: float) -> list[_Entry]:
        """Stop deliveries, wait up to ``timeout`` for in-flight messages to be settled, and
        return the ones that were not."""
        self.closing = True
        self._wake_self()
        if self.in_flight and timeout > 0:
            self.drained = asyncio.Event()
            try:
                async with asyncio.timeout(timeout):
                    await self.drained.wait()
            except TimeoutError:
                pass
        left = list(self.in_flight.values())
        self.in_flight.clear()
        return left


class _Member(_Subscriber):
    """One member of a group."""

    def __init__(self, group: _Group, max_payload: int, prefetch: int) -> None:
        super().__init__(group.hub, max_payload, prefetch)
        self.group = group

    async def __anext__(self) -> Message:
        group = self.group
        while True:
            if self.closing:
                raise StopAsyncIteration
            if len(self.in_flight) < self.prefetch:
                if group.queue:
                    return self._take()
                # _wait(group.waiters), written out: one coroutine less per message.
                waiter = self.waiter = self._loop.create_future()
                group.waiters.append(waiter)
                try:
                    await waiter
                except asyncio.CancelledError:
                    if waiter.done() and not waiter.cancelled():
                        _wake_first(group.waiters)  # pass on a wake-up we can no longer use
                    raise
                finally:
                    self.waiter = None
            else:
                await self._wait(None)

    def poll(self, waker: Wakeable) -> Message | None:
        """Push delivery (``meshbus.Service``): the next message if one can be taken now;
        otherwise None, with ``waker`` woken (``set_result``) as soon as one may be — from
        whatever queues it, the read callback of a direct connection included. A waker is
        woken once; poll again then. Nothing is taken while closing."""
        if self.closing:
            if self.group.queue:
                _wake_first(self.group.waiters)  # a wake-up this member cannot use
            return None
        if len(self.in_flight) >= self.prefetch:
            self.waiter = waker  # woken by the settle that makes room
            return None
        if not self.group.queue:
            self.group.waiters.append(waker)
            return None
        return self._take()

    def answer(self, message: Message, data: bytes) -> bool:
        """Push delivery (``meshbus.Service``): what ``message.respond(data)`` does for a
        request taken from ``poll`` and not yet settled, done at once, without a coroutine:
        the reply goes to the requester, the message is acked. False, with nothing done, when
        ``data`` is over the largest payload (``respond`` says so)."""
        if len(data) > self.max_payload:
            return False
        message._settled = True
        reply_to = message.reply_to
        route = message.token.reply
        if route is not None:
            route.send(data)
            self._settled(message)
            return True
        future = self.hub.pending.get(reply_to or "")
        if future is not None and not future.done():
            reply = _new(Envelope)  # Envelope(reply_to, data, {}, None, ""), without __init__
            reply.subject, reply.data, reply.headers, reply.key, reply.id = (
                reply_to or "",
                data,
                {},
                None,
                "",
            )
            future.set_result(reply)
        self._settled(message)
        return True

    def _take(self) -> Message:
        """Take the message at the head of the (non-empty) group queue."""
        group = self.group
        queue = group.queue
        entry = queue.popleft()
        entry.attempt += 1
        if entry.on_take is not None:
            entry.on_take()
            entry.on_take = None
        self.in_flight[id(entry)] = entry
        if queue and group.waiters:
            _wake_first(group.waiters)
        envelope = entry.envelope  # _deliver and Message._received, written out: once per
        headers = envelope.headers  # message, without a Python frame for either
        message = _new(Message)
        message.subject = envelope.subject
        message.data = envelope.data
        message.headers = dict(headers)
        message.key = envelope.key
        message.id = envelope.id
        message.attempt = entry.attempt
        message.reply_to = headers.get(REPLY_TO)
        message.token = entry
        message._settler = self
        message._settled = False
        return message

    async def nack(self, message: Message, delay: float | None) -> None:
        entry = self._settled(message)
        if entry is None:
            return
        if delay:
            asyncio.get_running_loop().call_later(delay, self.group.put, entry)
        else:
            self.group.put(entry)

    async def reject(self, message: Message, reason: str) -> None:
        entry = self._settled(message)
        if entry is None:
            return
        original = entry.envelope
        headers = dead_letter_headers(
            original.headers, original.subject, self.group.name, reason, entry.attempt
        )
        headers.pop(REPLY_TO, None)
        dead = Envelope(
            dead_letter_subject(self.group.name), original.data, headers, original.key, original.id
        )
        await self.hub.publish(dead, None)

    async def close(self, timeout: float) -> None:
        if self.closing:
            return
        left = await self._drain(timeout)
        if left:
            self.group.put_back(left)
        if self.on_close is not None:
            await self.on_close()


class _Broadcast(_Subscriber):
    """A broadcast subscriber with a bounded buffer."""

    def __init__(self, hub: _Hub, pattern: str, max_payload: int, prefetch: int, buffer: int):
        super().__init__(hub, max_payload, prefetch)
        self.pattern = pattern
        self.buffer: deque[Envelope] = deque()
        self.capacity = buffer
        self.space: deque[Wakeable] = deque()

    def offer(self, envelope: Envelope) -> bool:
        if self.closing:
            return True
        if len(self.buffer) >= self.capacity:
            return False
        self.buffer.append(envelope)
        if len(self.in_flight) < self.prefetch:
            self._wake_self()
        return True

    async def put(self, envelope: Envelope) -> None:
        while not self.offer(envelope):
            waiter = asyncio.get_running_loop().create_future()
            self.space.append(waiter)
            await waiter

    async def __anext__(self) -> Message:
        while True:
            if self.closing:
                raise StopAsyncIteration
            if self.buffer and len(self.in_flight) < self.prefetch:
                envelope = self.buffer.popleft()
                _wake_first(self.space)
                entry = _Entry(envelope, 1)
                self.in_flight[id(entry)] = entry
                return _deliver(envelope, 1, self, entry)
            await self._wait(None)

    async def close(self, timeout: float) -> None:
        if self.closing:
            return
        self.hub.broadcast.remove(self.pattern, self)
        self.buffer.clear()
        while self.space:
            waiter = self.space.popleft()
            if not waiter.done():
                waiter.set_result(None)
        # Settling a broadcast message changes nothing, so closing does not wait for it.
        await self._drain(0)
        if self.on_close is not None:
            await self.on_close()


class MemoryTransport:
    """The ``memory://`` channel (see the module docstring)."""

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        parts = parse_url(url)
        name = (parts.netloc + parts.path).strip("/")
        if not name:
            raise InvalidURL(url, "memory:// needs a name, e.g. memory://app")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        settings = {**query, **(options or {})}
        try:
            max_payload = int(settings.pop("max_payload", DEFAULT_MAX_PAYLOAD))
            self.buffer = int(settings.pop("buffer", DEFAULT_BUFFER))
        except (TypeError, ValueError) as exc:
            raise InvalidURL(url, f"max_payload and buffer are whole numbers: {exc}") from exc
        if settings:
            raise InvalidURL(url, f"unknown memory:// options: {', '.join(sorted(settings))}")
        if max_payload < 1 or self.buffer < 1:
            raise InvalidURL(url, "max_payload and buffer must be at least 1")
        self.name = name
        self.capabilities = Capabilities(
            max_payload=max_payload, durable=True, ordered_by_key=True, no_responders=True
        )
        self._hub: _Hub | None = None
        self._subs: set[_Member | _Broadcast] = set()
        self._closed = False

    @property
    def hub(self) -> _Hub:
        if self._hub is None or self._closed:
            raise Closed(f"memory://{self.name} is not connected")
        return self._hub

    async def start(self) -> None:
        hub = _hubs.get(self.name)
        if hub is None:
            hub = _hubs[self.name] = _Hub(self.name)
        self._hub = hub

    async def publish(self, envelope: Envelope, timeout: float | None) -> None:
        await self.hub.publish(envelope, timeout)

    async def publish_many(self, envelopes: Sequence[Envelope], timeout: float | None) -> None:
        hub = self.hub
        for envelope in envelopes:
            await hub.publish(envelope, timeout)

    async def subscribe(
        self, pattern: str, group: str | None, prefetch: int
    ) -> _Member | _Broadcast:
        sub = self.hub.subscriber(
            pattern, group, self.capabilities.max_payload, prefetch, self.buffer
        )
        self._subs.add(sub)
        return sub

    async def declare_group(self, pattern: str, group: str) -> None:
        self.hub.group(pattern, group)

    async def request(self, envelope: Envelope, timeout: float) -> Message:
        hub = self.hub
        if not hub.has_responders(envelope.subject):
            raise NoResponders(envelope.subject)
        hub.request_ids += 1
        inbox = f"_INBOX.{id(hub):x}.{hub.request_ids}"
        envelope.headers[REPLY_TO] = inbox
        envelope.headers[CORRELATION_ID] = envelope.id
        future: asyncio.Future[Envelope] = asyncio.get_running_loop().create_future()
        hub.pending[inbox] = future
        try:
            async with asyncio.timeout(timeout):
                await hub.publish(envelope, timeout)
                reply = await future
        except TimeoutError:
            raise RequestTimeout(envelope.subject, timeout) from None
        finally:
            hub.pending.pop(inbox, None)
        return Message(reply.subject, reply.data, reply.headers, id=reply.id)

    async def close(self, timeout: float) -> None:
        if self._closed:
            return
        subs = list(self._subs)
        self._subs.clear()
        await asyncio.gather(*(sub.close(timeout) for sub in subs))
        self._closed = True
        self._hub = None
