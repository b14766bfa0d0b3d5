"""The in-process delivery engine: groups, their members, broadcast subscribers, reply routes.

Two channels deliver through it: ``memory://`` (a :class:`Hub` per name, shared by the buses
of one process) and the direct channels' listen address (a private hub whose messages come
from peers). It keeps the contract's delivery semantics in one process:

- a :class:`Group` is one FIFO queue shared by its :class:`Member` s: each message goes to one
  member, is redelivered (``attempt`` counted) when nacked or left unsettled at a member's
  close, and a key keeps its publish order;
- a :class:`BroadcastSubscriber` gets every message published after it subscribed, holds at
  most ``buffer`` of them undelivered, and a publisher waits for room rather than dropping;
- requests are answered through a :class:`ReplyRoute` given with the message
  (``Group.enqueue(..., reply=)``) or through a waiter registered under the request's
  reply-to token (:meth:`Hub.expect_reply`).

What a queuer needs to know is the small API below: :meth:`Hub.subscriber` (with the close
callback passed in), :meth:`Hub.group`, :meth:`Group.enqueue` (with ``on_take`` called once,
when a member first takes the message), :meth:`Hub.offer` for broadcast subscribers,
:meth:`Hub.holding` while draining, and the reply registry. Settling is done here too:
``ack``/``nack``/``reject``/``respond`` of a delivered message land on its member or
subscriber, which are the messages' settlers.

Nothing here is thread-safe; every call comes from the event loop that made the hub.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

from meshbus.errors import PublishTimeout
from meshbus.headers import REPLY_TO, dead_letter_headers, dead_letter_subject
from meshbus.message import Message
from meshbus.subjects import SubjectIndex
from meshbus.transport import Envelope, Wakeable

__all__ = [
    "BroadcastSubscriber",
    "Entry",
    "Group",
    "Hub",
    "Member",
    "ReplyRoute",
    "ReplyWaiter",
    "Wakeable",
]

_delivered = Message.delivered
OnClose = Callable[[], Awaitable[None]]
"""Awaited once a subscriber has closed (the direct listener withdraws its interest)."""


def _wake_first(waiters: deque[Wakeable]) -> None:
    while waiters:
        try:  # not asking done() first: a done waiter (cancelled, fired) says so by raising
            waiters.popleft().set_result(None)
        except asyncio.InvalidStateError:
            continue
        return


class ReplyWaiter(Protocol):
    """Where ``respond`` puts the reply to a request: an ``asyncio.Future``, or anything that
    can be completed the same way."""

    def done(self) -> bool:
        """True once a reply was set."""

    def set_result(self, result: Envelope, /) -> None:
        """Hand over the reply."""


class ReplyRoute(ReplyWaiter, Protocol):
    """A request's reply route that its queuer gave with it (``Group.enqueue(reply=)``)."""

    def send(self, data: bytes, /) -> None:
        """Hand over a reply of ``data`` without headers, unless a reply was set already."""


class Entry:
    """A message queued for one group, with its delivery count in that group; ``on_take`` (if
    set) is called when a member first takes it; ``reply`` is where the reply to a request
    goes, when its queuer said so itself (else it is found by the request's reply-to token in
    the hub's reply registry)."""

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


class Hub:
    """The in-process broker: its groups, broadcast subscribers and pending replies."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._broadcast: SubjectIndex[BroadcastSubscriber] = SubjectIndex()
        self._groups: dict[tuple[str, str], Group] = {}
        self._group_index: SubjectIndex[Group] = SubjectIndex()
        self._pending: dict[str, ReplyWaiter] = {}
        self.hurried = False

    # -- groups and subscribers -----------------------------------------------------------------

    def group(self, pattern: str, name: str) -> Group:
        """The group ``name`` on ``pattern``, made (empty) if it does not exist."""
        group = self._groups.get((pattern, name))
        if group is None:
            group = self._groups[(pattern, name)] = Group(self, pattern, name)
            self._group_index.add(pattern, group)
        return group

    def subscriber(
        self,
        pattern: str,
        group: str | None,
        *,
        max_payload: int,
        prefetch: int,
        buffer: int,
        on_close: OnClose | None = None,
    ) -> Member | BroadcastSubscriber:
        """A new member of ``group`` on ``pattern``, or (no group) a broadcast subscriber
        holding at most ``buffer`` undelivered messages. ``on_close`` is awaited once it has
        closed."""
        if group is None:
            sub = BroadcastSubscriber(self, pattern, max_payload, prefetch, buffer, on_close)
            self._broadcast.add(pattern, sub)
            return sub
        return Member(self.group(pattern, group), max_payload, prefetch, on_close)

    def remove_group(self, pattern: str, name: str) -> None:
        """Forget a group and whatever it still holds."""
        group = self._groups.pop((pattern, name), None)
        if group is not None:
            self._group_index.remove(pattern, group)

    def holding(self) -> bool:
        """True while some group holds a message not settled for good: queued, waiting for a
        delayed redelivery, or taken by a member and not settled yet."""
        return any(
            group.queue or group.delayed or any(m.in_flight for m in group.members)
            for group in self._groups.values()
        )

    def hurry(self) -> None:
        """From now on a redelivery asked with a delay is queued at once, and those waiting
        for their delay are queued now: a draining listener hands out everything it accepted
        before it closes, whatever delay a handler asked for."""
        self.hurried = True
        for group in self._groups.values():
            group.due_now()

    def queued(self) -> int:
        """Messages queued in groups and not taken by a member yet."""
        return sum(len(group.queue) for group in self._groups.values())

    # -- queueing -------------------------------------------------------------------------------

    def route(self, envelope: Envelope) -> list[BroadcastSubscriber]:
        """Queue ``envelope`` for every group and broadcast subscriber it matches; return the
        broadcast subscribers whose buffers were full (``put`` it there to wait for room)."""
        subject = envelope.subject
        for group in self._group_index.lookup(subject):
            group.enqueue(envelope)
        full: list[BroadcastSubscriber] = []
        for sub in self._broadcast.lookup(subject):
            if not sub.offer(envelope):
                full.append(sub)
        return full

    def offer(self, envelope: Envelope, patterns: Iterable[str]) -> list[BroadcastSubscriber]:
        """Offer ``envelope`` to the broadcast subscribers of the given ``patterns`` that match
        its subject; return those whose buffers were full."""
        return [
            sub
            for sub in self._broadcast.lookup(envelope.subject)
            if sub.pattern in patterns and not sub.offer(envelope)
        ]

    async def publish(self, envelope: Envelope, timeout: float | None) -> None:
        """Queue ``envelope`` everywhere it goes, waiting up to ``timeout`` for room in full
        broadcast buffers (``PublishTimeout`` after that)."""
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
        """True when some group or broadcast subscriber would get a message on ``subject``."""
        return bool(self._group_index.lookup(subject) or self._broadcast.lookup(subject))

    # -- replies --------------------------------------------------------------------------------

    def expect_reply(self, token: str, waiter: ReplyWaiter) -> None:
        """Route the reply to the request whose reply-to header is ``token`` to ``waiter``."""
        self._pending[token] = waiter

    def forget_reply(self, token: str) -> None:
        """Nobody waits for the reply to ``token`` any more."""
        self._pending.pop(token, None)

    def waiting_replies(self) -> int:
        """Requests whose reply someone waits for through the registry."""
        return len(self._pending)

    def reply_waiter(self, token: str | None) -> ReplyWaiter | None:
        """Who waits for the reply to ``token``, if anybody."""
        return self._pending.get(token or "")


class Group:
    """A durable group: one FIFO queue shared by its members."""

    def __init__(self, hub: Hub, pattern: str, name: str) -> None:
        self.hub = hub
        self.pattern = pattern
        self.name = name
        self.queue: deque[Entry] = deque()
        self.waiters: deque[Wakeable] = deque()
        self.delayed: dict[Entry, asyncio.TimerHandle] = {}
        """Entries nacked with a delay, and the timers that queue them again."""
        self.members: set[Member] = set()

    def enqueue(
        self,
        envelope: Envelope,
        on_take: Callable[[], None] | None = None,
        reply: ReplyRoute | None = None,
    ) -> None:
        """Queue ``envelope`` for one member; ``on_take()`` is called when a member first
        takes it; ``reply`` (for a request) is where its reply goes."""
        self.queue.append(Entry(envelope, 0, on_take, reply))
        if self.waiters:
            _wake_first(self.waiters)

    def put(self, entry: Entry) -> None:
        """Queue an entry again (a redelivery)."""
        self.queue.append(entry)
        if self.waiters:
            _wake_first(self.waiters)

    def put_later(self, entry: Entry, delay: float) -> None:
        """Queue an entry again after ``delay`` seconds (at once while the hub hurries)."""
        if self.hub.hurried:
            self.put(entry)
            return
        self.delayed[entry] = asyncio.get_running_loop().call_later(delay, self._due, entry)

    def _due(self, entry: Entry) -> None:
        if self.delayed.pop(entry, None) is not None:
            self.put(entry)

    def due_now(self) -> None:
        """Queue every delayed entry now."""
        delayed, self.delayed = self.delayed, {}
        for entry, timer in delayed.items():
            timer.cancel()
            self.put(entry)

    def put_back(self, entries: list[Entry]) -> None:
        """Give entries back at the head of the queue, in their order (a member's close)."""
        self.queue.extendleft(reversed(entries))
        for _ in entries:
            _wake_first(self.waiters)


class _Subscriber:
    """What group members and broadcast subscribers share: delivery, settling, draining."""

    def __init__(self, hub: Hub, max_payload: int, prefetch: int, on_close: OnClose | None) -> None:
        self.hub = hub
        self.max_payload = max_payload
        self.prefetch = prefetch
        self.in_flight: dict[int, Entry] = {}
        self.closing = False
        self.waiter: Wakeable | None = None
        # Kept: asyncio.get_running_loop() costs a getpid() system call each time.
        self._loop = asyncio.get_running_loop()
        self._drained: asyncio.Event | None = None
        self._on_close = on_close

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

    def _settled(self, message: Message) -> Entry | None:
        in_flight = self.in_flight
        entry = in_flight.pop(id(message.token), None)
        if len(in_flight) + 1 == self.prefetch and not self.closing:
            self._wake_self()
        if self._drained is not None and not in_flight:
            self._drained.set()
        return entry

    async def ack(self, message: Message) -> None:
        # _settled, less what ack does not need: ack is the settle of nearly every message,
        # and a call less here is measurable on the in-process channel (docs/benchmarks.md).
        in_flight = self.in_flight
        in_flight.pop(id(message.token), None)
        if len(in_flight) + 1 == self.prefetch and not self.closing:
            self._wake_self()
        if self._drained is not None and not in_flight:
            self._drained.set()

    async def nack(self, message: Message, delay: float | None) -> None:
        self._settled(message)

    async def reject(self, message: Message, reason: str) -> None:
        self._settled(message)

    async def progress(self, message: Message) -> None:
        return None

    def answer(self, message: Message, data: bytes) -> bool:
        """Respond with ``data`` and ack at once; only group members can (see ``Member``)."""
        return False

    async def respond(self, message: Message, reply: Envelope) -> None:
        entry: Entry = message.token
        waiter: ReplyWaiter | None = entry.reply
        if waiter is None:
            waiter = self.hub.reply_waiter(message.reply_to)
        if waiter is not None and not waiter.done():
            waiter.set_result(reply)

    async def _drain(self, timeout: float) -> list[Entry]:
        """Stop deliveries, wait up to ``timeout`` for in-flight messages to be settled, and
        return the ones that were not."""
        self.closing = True
        self._wake_self()
        if self.in_flight and timeout > 0:
            self._drained = asyncio.Event()
            try:
                async with asyncio.timeout(timeout):
                    await self._drained.wait()
            except TimeoutError:
                pass
        left = list(self.in_flight.values())
        self.in_flight.clear()
        return left

    async def _closed(self) -> None:
        if self._on_close is not None:
            await self._on_close()


class Member(_Subscriber):
    """One member of a group: a ``TransportSubscription`` that can also push (``poll``) and
    answer requests at once (``answer``)."""

    def __init__(
        self, group: Group, max_payload: int, prefetch: int, on_close: OnClose | None = None
    ) -> None:
        super().__init__(group.hub, max_payload, prefetch, on_close)
        self.group = group
        group.members.add(self)

    async def __anext__(self) -> Message:
        group = self.group
        while True:
            if self.closing:
                raise StopAsyncIteration
            if len(self.in_flight) < self.prefetch:
                if group.queue:
                    return self._take()
                # _wait(group.waiters) in place: a coroutine less for each message waited for
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
        """What ``message.respond(data)`` does for a request not yet settled, done at once,
        without a coroutine: the reply goes to the requester, the message is acked. False,
        with nothing done, when ``data`` is over the largest payload (``respond`` says so)."""
        if len(data) > self.max_payload:
            return False
        message.mark_settled()
        entry: Entry = message.token
        route = entry.reply
        if route is not None:
            route.send(data)
        else:
            waiter = self.hub._pending.get(message.reply_to or "")
            if waiter is not None and not waiter.done():
                waiter.set_result(Envelope(message.reply_to or "", data, {}, None, ""))
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
        envelope = entry.envelope
        headers = envelope.headers
        return _delivered(
            envelope.subject,
            envelope.data,
            dict(headers),
            envelope.key,
            envelope.id,
            entry.attempt,
            headers.get(REPLY_TO),
            self,
            entry,
        )

    async def nack(self, message: Message, delay: float | None) -> None:
        entry = self._settled(message)
        if entry is None:
            return
        if delay:
            self.group.put_later(entry, delay)
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
        """Stop taking messages, wait up to ``timeout`` for delivered ones to be settled, and
        give the rest back to the group (idempotent)."""
        if self.closing:
            return
        left = await self._drain(timeout)
        self.group.members.discard(self)
        if left:
            self.group.put_back(left)
        await self._closed()


class BroadcastSubscriber(_Subscriber):
    """A broadcast subscriber with a bounded buffer."""

    def __init__(
        self,
        hub: Hub,
        pattern: str,
        max_payload: int,
        prefetch: int,
        buffer: int,
        on_close: OnClose | None = None,
    ) -> None:
        super().__init__(hub, max_payload, prefetch, on_close)
        self.pattern = pattern
        self.buffer: deque[Envelope] = deque()
        self.capacity = buffer
        self.space: deque[Wakeable] = deque()

    def offer(self, envelope: Envelope) -> bool:
        """Buffer ``envelope`` if there is room (or drop it, closing); False when full."""
        if self.closing:
            return True
        if len(self.buffer) >= self.capacity:
            return False
        self.buffer.append(envelope)
        if len(self.in_flight) < self.prefetch:
            self._wake_self()
        return True

    async def put(self, envelope: Envelope) -> None:
        """Buffer ``envelope``, waiting for room."""
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
                entry = Entry(envelope, 1)
                self.in_flight[id(entry)] = entry
                headers = envelope.headers
                return _delivered(
                    envelope.subject,
                    envelope.data,
                    dict(headers),
                    envelope.key,
                    envelope.id,
                    1,
                    headers.get(REPLY_TO),
                    self,
                    entry,
                )
            await self._wait(None)

    async def close(self, timeout: float) -> None:
        """Stop at once (settling a broadcast message changes nothing, so closing does not
        wait for it), dropping what is buffered (idempotent)."""
        if self.closing:
            return
        self.hub._broadcast.remove(self.pattern, self)
        self.buffer.clear()
        while self.space:
            waiter = self.space.popleft()
            if not waiter.done():
                waiter.set_result(None)
        await self._drain(0)
        await self._closed()
