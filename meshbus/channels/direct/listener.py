"""The listening side of the direct channels (``listen="tcp://0.0.0.0:7000"``).

It serves this process's subscriptions: each local group and each broadcast pattern is an
*interest*, announced to every connected peer (and kept current); messages that peers send
for those interests are queued into a private in-process hub, which gives the memory channel's
semantics locally (one member per group, every broadcast subscriber, nack and redelivery among
local members). They are queued from the connection's read callback, a PUB frame at a time,
and the frame is ACCEPTed once they are (only a message waiting for room in a full broadcast
buffer goes through a backlog task). Credit goes back to the sender as local subscribers take
messages, so a slow consumer slows its publishers.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import os
import socket
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from meshbus.channels.direct._types import _REPLY, _REPLY_HEAD
from meshbus.channels.direct.config import DirectConfig
from meshbus.channels.direct.connection import Connection, SilentPeer, Wire
from meshbus.channels.direct.frames import (
    REFUSE_CLOSING,
    REFUSE_NO_SUBSCRIBER,
    Accept,
    Bye,
    Credit,
    Frame,
    Hello,
    Interest,
    Pub,
    Pubs,
    Refuse,
    Uninterest,
    encode_reply,
)
from meshbus.channels.memory import _Broadcast, _Entry, _Group, _Hub, _Member, _wake_first
from meshbus.errors import (
    AuthenticationFailed,
    ConnectFailed,
    ConnectionLost,
    NotSupported,
    ProtocolError,
)
from meshbus.headers import CORRELATION_ID, REPLY_TO
from meshbus.message import Message
from meshbus.transport import Capabilities, Envelope

__all__ = ["DirectListener"]

log = logging.getLogger("meshbus.direct")
_new = object.__new__
_DEFERRED_FOR = 0.005
"""Seconds a deferred ACCEPT waits at most for the frame after its own (see
``_Served.accept_later``)."""


_Targets = tuple[list[_Group], set[str]]
"""What a PUB's target list means here: the local groups and broadcast patterns."""


class _Progress:
    """Wakes ``quiesce`` when a PUB is handled or a message taken; nothing is signalled while
    nobody waits."""

    __slots__ = ("event", "wanted")

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.wanted = False

    def made(self) -> None:
        if self.wanted:
            self.event.set()


class _Served:
    """One inbound connection and what it is owed."""

    def __init__(self, conn: Connection, credit: int, progress: _Progress) -> None:
        self.conn = conn
        self.progress = progress
        # PUBs that wait behind one whose broadcast subscriber is full: (pub, subscribers it
        # still waits for or None when not handled yet, whether its credit comes back once in).
        self.backlog: deque[tuple[Pub, list[_Broadcast] | None, bool]] = deque()
        self.owed = 0  # credit earned back, not sent yet
        self.batch = max(1, credit // 4)
        self.replies: set[str] = set()
        self.task: asyncio.Task[None] | None = None
        self.on_take: Callable[[], None] = self.taken
        self.token_prefix = f"{id(self):x}."  # reply-to tokens of this connection's requests
        self.accepted = 0  # the last seq ACCEPTed
        self.deferred = 0  # a later seq whose ACCEPT waits for the frames after it (MORE)
        self.alarm: asyncio.TimerHandle | None = None  # sends a deferred ACCEPT in the end

    def accept(self, seq: int, *, now: bool = False) -> None:
        """ACCEPT every message up to ``seq`` (what a deferred ACCEPT covered too)."""
        if seq > self.accepted:
            self.accepted = seq
            self.conn.send(Accept(seq), now=now)

    def accept_later(self, seq: int) -> None:
        """ACCEPT ``seq`` with the frame after it, which its publisher is sending now (its
        frame had the MORE flag): one confirmation, and one wake-up of the publisher, for a
        run of frames. Once a quarter of the credit waits (the publisher then holds that much
        unconfirmed), or ``_DEFERRED_FOR`` seconds pass without the next frame (a publish
        cancelled between its frames), it goes on its own."""
        self.deferred = seq
        if seq - self.accepted >= self.batch:
            self.accept(seq, now=True)
        elif self.alarm is None:
            self.alarm = asyncio.get_running_loop().call_later(_DEFERRED_FOR, self._overdue)

    def _overdue(self) -> None:
        self.alarm = None
        self.accept_deferred()

    def accept_deferred(self) -> None:
        """Send the deferred ACCEPT now, if there is one (the alarm's, or before a BYE)."""
        if self.deferred > self.accepted and not self.conn.ended:
            with contextlib.suppress(ConnectionLost):
                self.accept(self.deferred, now=True)

    def taken(self) -> None:
        if self.progress.wanted:
            self.progress.event.set()
        self.owed += 1
        if self.owed >= self.batch and not self.conn.ended:
            # At once: a subscriber taking messages in a tight loop would hold back a queued
            # CREDIT until it runs dry, and the publisher with it.
            with contextlib.suppress(ConnectionLost):
                self.conn.send(Credit(self.owed), now=True)
            self.owed = 0


class _Answer:
    """Sends the reply to a request PUB back on its connection as soon as it is set. A request
    queued for one local group carries it (``_Entry.reply``)."""

    __slots__ = ("_conn", "_sent", "_seq")

    def __init__(self, conn: Connection, seq: int) -> None:
        self._conn = conn
        self._seq = seq
        self._sent = False

    def done(self) -> bool:
        return self._sent

    def set_result(self, reply: Envelope, /) -> None:
        self._sent = True
        try:
            self._conn.write(encode_reply(self._seq, reply.data, reply.headers))
        except ConnectionLost:
            pass  # the requester is gone

    def send(self, data: bytes, /) -> None:
        if self._sent:
            return
        self._sent = True
        try:  # encode_reply(seq, data, {}), written out: once per request a service answers
            self._conn.write(_REPLY_HEAD.pack(11 + len(data), _REPLY, self._seq, 0) + data)
        except ConnectionLost:
            pass


class _ReplySink(_Answer):
    """An ``_Answer`` found by the request's reply-to token in ``_Hub.pending``, for a request
    queued any other way (for several groups, or broadcast subscribers); the token goes once it
    is answered, or with its connection."""

    __slots__ = ("_listener", "_served", "_token")

    def __init__(self, listener: DirectListener, served: _Served, token: str, seq: int) -> None:
        super().__init__(served.conn, seq)
        self._listener = listener
        self._served = served
        self._token = token

    def set_result(self, reply: Envelope, /) -> None:
        super().set_result(reply)
        # After the write: the requester is not kept waiting for the bookkeeping.
        self._listener._hub.pending.pop(self._token, None)
        self._served.replies.discard(self._token)


class DirectListener:
    """Serves this process's subscriptions to direct peers (see the module docstring)."""

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        self.config = DirectConfig.from_url(url, options, listening=True)
        self.capabilities = Capabilities(
            max_payload=self.config.max_payload, ordered_by_key=True, no_responders=True
        )
        self._hub = _Hub(f"listener:{url}")
        self._node = f"{os.uname().nodename}-{os.getpid()}-{id(self):x}"
        self._interests: dict[tuple[str, str | None], list[int]] = {}  # key -> [id, refs]
        self._by_id: dict[int, tuple[str, str | None]] = {}
        self._ids = itertools.count(1)
        self._served: set[_Served] = set()
        self._targets: dict[tuple[int, ...], _Targets] = {}  # cleared when interests change
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._progress = _Progress()
        self._draining = False
        self._closing = False

    @property
    def port(self) -> int:
        """The port actually listened on (useful with port 0)."""
        assert self._server is not None
        assert self._server.sockets
        return int(self._server.sockets[0].getsockname()[1])

    def _hello(self) -> Hello:
        interests = tuple(Interest(i, p, g) for (p, g), (i, _) in self._interests.items())
        return Hello(
            node=self._node,
            max_frame=self.config.settings.max_frame,
            credit=self.config.settings.credit,
            interests=interests,
        )

    async def start(self) -> None:
        (host, port), *_ = self.config.addresses
        try:
            self._server = await asyncio.get_running_loop().create_server(
                lambda: Wire(self.config.settings.max_frame, self._accepted),
                host,
                port,
                ssl=self.config.ssl,
            )
        except OSError as exc:
            raise ConnectFailed(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        if self.config.rcvbuf:  # inherited by each connection it accepts (see DEFAULT_RCVBUF)
            for sock in self._server.sockets:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.config.rcvbuf)
                except OSError as exc:  # the system's own buffer serves, if less well
                    log.warning("listener %s:%s: rcvbuf not set: %s", host, port, exc)

    def _accepted(self, wire: Wire) -> None:
        handler = asyncio.create_task(self._serve(wire))
        self._handlers.add(handler)
        handler.add_done_callback(self._handlers.discard)
        # The connection ends with its handler, also one cancelled by close() before it ran
        # (whose socket was otherwise left to the garbage collector).
        transport = wire.transport
        assert transport is not None
        handler.add_done_callback(lambda _: transport.close())

    async def _serve(self, wire: Wire) -> None:
        assert wire.transport is not None
        peer = wire.transport.get_extra_info("peername")
        try:
            conn = await Connection.establish(
                wire, self.config.settings, self._hello(), accepting=True
            )
        except SilentPeer:
            log.debug("direct peer %s closed without a word (a port probe)", peer)
            return
        except (ProtocolError, AuthenticationFailed, ConnectionError, OSError) as exc:
            log.warning("refused direct peer %s: %s", peer, exc)
            return
        if self._closing:
            await conn.close("listener is closing")
            return
        served = _Served(conn, self.config.settings.credit, self._progress)
        self._served.add(served)
        conn.start(
            functools.partial(self._on_frame, served),
            on_pub=functools.partial(self._on_pub, served),
        )
        await conn.closed.wait()
        if served.task is not None:
            served.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await served.task
        for token in served.replies:
            self._hub.pending.pop(token, None)
        self._served.discard(served)

    def _on_frame(self, served: _Served, frame: Frame) -> None:
        if isinstance(frame, Pubs):
            pubs = frame.messages
            if served.backlog:
                served.backlog.extend((pub, None, False) for pub in pubs)
            elif len(pubs) == 1 and not frame.more:
                self._on_pub(served, pubs[0])
            else:
                self._take(served, pubs, frame.more)
        elif not isinstance(frame, Bye):
            log.debug("ignoring %s from a publisher", type(frame).__name__)

    def _on_pub(self, served: _Served, pub: Pub) -> None:
        """A PUB frame of one message: from ``_on_frame``, or straight from the connection's
        read callback when the frame was all that the read brought."""
        if served.backlog:
            served.backlog.append((pub, None, False))
            return
        if pub.request and not (self._closing or self._draining):
            # A request (always alone in its frame) for one local group: _take and
            # _queue_locally, written out.
            groups, patterns = self._targets.get(pub.targets) or self._resolve(pub.targets)
            if len(groups) == 1 and not patterns:
                headers = pub.headers  # _expect_reply, less the registration
                headers[REPLY_TO] = served.token_prefix + str(pub.seq)
                if CORRELATION_ID not in headers:
                    headers[CORRELATION_ID] = pub.id
                group = groups[0]
                # _Entry(pub, 0, served.on_take, _Answer(served.conn, pub.seq)), without
                # two Python frames for __init__ (once per request)
                answer = _new(_Answer)
                answer._conn, answer._seq, answer._sent = served.conn, pub.seq, False
                entry = _new(_Entry)
                entry.envelope, entry.attempt, entry.on_take, entry.reply = (
                    pub,
                    0,
                    served.on_take,
                    answer,
                )
                group.queue.append(entry)
                waiters = group.waiters
                while waiters:  # _wake_first, written out
                    try:
                        waiters.popleft().set_result(None)
                    except asyncio.InvalidStateError:
                        continue
                    break
                if self._progress.wanted:
                    self._progress.event.set()
                return
        self._take(served, (pub,))

    def _take(self, served: _Served, pubs: tuple[Pub, ...], more: bool = False) -> None:
        """Queue a PUB frame's messages locally, in order, and ACCEPT them in one frame (with
        the frames after it when ``more``). One that waits for room in a broadcast
        subscriber's buffer sends it and all that follow to the backlog, which ``_work_off``
        empties."""
        # The usual case in place: a published message for exactly one local group. Runs of
        # messages share one targets tuple (the decoder reuses it), so it is resolved per run.
        last: tuple[int, ...] | None = None
        group: _Group | None = None
        on_take = served.on_take
        open_ = not (self._closing or self._draining)
        for at, pub in enumerate(pubs):
            if pub.targets is not last:
                last = pub.targets
                groups, patterns = self._targets.get(last) or self._resolve(last)
                group = groups[0] if open_ and len(groups) == 1 and not patterns else None
            if group is not None:
                if pub.request:
                    self._expect_reply(served, pub)
                group.queue.append(_Entry(pub, 0, on_take))
                if group.waiters:
                    _wake_first(group.waiters)
                continue
            waiting = self._queue_locally(served, pub)
            if waiting is not None:
                served.backlog.append((pub, *waiting))
                served.backlog.extend((later, None, False) for later in pubs[at + 1 :])
                if at:
                    served.accept(pub.seq - 1)
                served.task = asyncio.create_task(self._work_off(served))
                return
        # The ACCEPT goes at once, before local subscribers get to run, while the publisher
        # waits for it. A request (always alone in its frame) is answered by its REPLY.
        if more:
            served.accept_later(pubs[-1].seq)
        elif not pubs[0].request:
            served.accept(pubs[-1].seq, now=True)
        if self._progress.wanted:
            self._progress.event.set()

    async def _work_off(self, served: _Served) -> None:
        """Empty the backlog in arrival order, waiting for broadcast buffers to have room."""
        conn = served.conn
        backlog = served.backlog
        last_accept = 0
        while True:
            pub, waiting, returns_credit = backlog[0]
            if waiting is None:
                handled = self._queue_locally(served, pub)
                if handled is not None:
                    waiting, returns_credit = handled
            for sub in waiting or ():
                await sub.put(pub)
            if returns_credit:
                served.taken()
            backlog.popleft()
            self._progress.made()
            if not backlog:  # nothing awaited from here on: frames arriving now go to _take
                served.accept(pub.seq)
                served.task = None
                return
            if pub.seq - last_accept >= 64:
                served.accept(pub.seq)
                last_accept = pub.seq
            await conn.drain()

    def _resolve(self, targets: tuple[int, ...]) -> _Targets:
        groups: list[_Group] = []
        patterns: set[str] = set()
        for target in targets:
            key = self._by_id.get(target)
            if key is None:
                continue
            pattern, group = key
            if group is None:
                patterns.add(pattern)
            else:
                groups.append(self._hub.groups[(pattern, group)])
        if len(self._targets) >= 4096:
            self._targets.clear()
        resolved = self._targets[targets] = (groups, patterns)
        return resolved

    def _queue_locally(self, served: _Served, pub: Pub) -> tuple[list[_Broadcast], bool] | None:
        """Queue ``pub`` for its interests (or REFUSE it). Return None when done, or the
        broadcast subscribers whose buffers are full — it still has to be put there — and
        whether its credit comes back once it is."""
        if self._closing or self._draining:
            served.conn.send(Refuse(pub.seq, REFUSE_CLOSING, "listener is closing"))
            served.taken()
            return None
        groups, patterns = self._targets.get(pub.targets) or self._resolve(pub.targets)
        if not groups and not patterns:
            served.conn.send(Refuse(pub.seq, REFUSE_NO_SUBSCRIBER, "no subscriber for it here"))
            served.taken()
            return None
        if pub.request:
            self._expect_reply(served, pub)
        if len(groups) == 1:
            groups[0].put(_Entry(pub, 0, served.on_take))
        elif groups:
            remaining = [len(groups)]  # credit returns when every group's copy is taken

            def one_taken() -> None:
                remaining[0] -= 1
                if remaining[0] == 0:
                    served.taken()

            for group in groups:
                group.put(_Entry(pub, 0, one_taken))
        if not patterns:
            return None
        full = [
            sub
            for sub in self._hub.broadcast.lookup(pub.subject)
            if sub.pattern in patterns and not sub.offer(pub)
        ]
        if full:
            return full, not groups
        if not groups:
            served.taken()
        return None

    def _expect_reply(self, served: _Served, pub: Pub) -> None:
        """Give request ``pub`` a reply-to token whose reply goes back on its connection."""
        token = served.token_prefix + str(pub.seq)
        headers = pub.headers
        headers[REPLY_TO] = token
        if CORRELATION_ID not in headers:
            headers[CORRELATION_ID] = pub.id
        self._hub.pending[token] = _ReplySink(self, served, token, pub.seq)
        served.replies.add(token)

    # -- subscriptions -------------------------------------------------------------------------

    async def subscribe(
        self, pattern: str, group: str | None, prefetch: int
    ) -> _Member | _Broadcast:
        sub = self._hub.subscriber(
            pattern, group, self.config.max_payload, prefetch, self.config.buffer
        )
        key = (pattern, group)
        entry = self._interests.get(key)
        if entry is None:
            interest_id = next(self._ids)
            self._interests[key] = [interest_id, 1]
            self._by_id[interest_id] = key
            self._targets.clear()
            await self._announce(Interest(interest_id, pattern, group))
        else:
            entry[1] += 1
        sub.on_close = lambda: self._release(key)  # closing it withdraws the interest
        return sub

    async def _release(self, key: tuple[str, str | None]) -> None:
        entry = self._interests.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            del self._interests[key]
            del self._by_id[entry[0]]
            self._targets.clear()
            if key[1] is not None:
                self._hub.remove_group(key[0], key[1])
            await self._announce(Uninterest(entry[0]))

    async def _announce(self, frame: Interest | Uninterest) -> None:
        """Tell every peer, and return once each has processed it (so a subscription is
        active, or gone, everywhere before the call returns)."""
        live = [s.conn for s in self._served if not s.conn.closed.is_set()]
        for conn in live:
            with contextlib.suppress(ConnectionLost):
                conn.send(frame)
        results = await asyncio.gather(
            *(conn.barrier(self.config.settings.hello_timeout) for conn in live),
            return_exceptions=True,
        )
        for conn, result in zip(live, results, strict=True):
            if isinstance(result, BaseException) and not conn.closed.is_set():
                log.warning("peer %s did not confirm an interest change: %r", conn.name, result)

    # -- what a listener does not do -----------------------------------------------------------

    async def publish(self, envelope: Envelope, timeout: float | None) -> None:
        raise NotSupported("a listen address does not publish; publish through a tcp:// route")

    async def publish_many(self, envelopes: Sequence[Envelope], timeout: float | None) -> None:
        raise NotSupported("a listen address does not publish; publish through a tcp:// route")

    async def request(self, envelope: Envelope, timeout: float) -> Message:
        raise NotSupported("a listen address does not send requests")

    async def declare_group(self, pattern: str, group: str) -> None:
        raise NotSupported("direct channels are not durable: a group exists while a member does")

    async def quiesce(self, timeout: float) -> None:
        """The first step of closing: tell every peer to send nothing new (BYE), then give
        local members up to ``timeout`` seconds to take what this listener already accepted,
        so that closing loses nothing that was confirmed to a publisher."""
        self._draining = True  # PUBs still on their way are refused: they go to other members
        self._progress.wanted = True
        for served in list(self._served):
            served.accept_deferred()  # what it queued is confirmed before it says goodbye
            with contextlib.suppress(ConnectionLost):
                served.conn.send(Bye("listener is closing"))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while any(s.backlog for s in self._served) or any(
                    group.queue for group in self._hub.groups.values()
                ):
                    self._progress.event.clear()
                    await self._progress.event.wait()  # set whenever a PUB is handled or taken

    async def close(self, timeout: float) -> None:
        if self._closing:
            return
        self._closing = True
        if self._server is not None:
            self._server.close()
        for served in list(self._served):
            served.accept_deferred()
            await served.conn.close("listener closed")
        for handler in list(self._handlers):
            handler.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
