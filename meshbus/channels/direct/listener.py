"""The listening side of the direct channels (``listen="tcp://0.0.0.0:7000"``).

It serves this process's subscriptions: each local group and each broadcast pattern is an
*interest*, announced to every connected peer (and kept current); messages that peers send
for those interests are queued into a private in-process hub (``meshbus.channels.delivery``),
which gives the memory channel's semantics locally (one member per group, every broadcast
subscriber, nack and redelivery among local members). They are queued from the connection's
read callback, a PUB frame at a time, and the frame is ACCEPTed once they are (only a message
waiting for room in a full broadcast buffer goes through a backlog task). Credit goes back to
the sender as local subscribers take messages, so a slow consumer slows its publishers; what
each connection is owed is kept in ``inbound``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import os
import socket
from collections.abc import Mapping
from typing import Any, Literal

from meshbus.channels.delivery import BroadcastSubscriber, Group, Hub, Member
from meshbus.channels.direct.config import DirectConfig
from meshbus.channels.direct.connection import Connection, SilentPeer, Wire
from meshbus.channels.direct.frames import (
    REFUSE_CLOSING,
    REFUSE_NO_SUBSCRIBER,
    Bye,
    Frame,
    Hello,
    Interest,
    Pub,
    Pubs,
    Refuse,
    Uninterest,
)
from meshbus.channels.direct.inbound import Answer, Progress, Served
from meshbus.errors import AuthenticationFailed, ConnectFailed, ConnectionLost, ProtocolError
from meshbus.headers import CORRELATION_ID, REPLY_TO
from meshbus.kit import BoundedCache
from meshbus.transport import Capabilities

__all__ = ["DirectListener"]

log = logging.getLogger("meshbus.direct")

_Targets = tuple[list[Group], set[str]]
"""What a PUB's target list means here: the local groups and broadcast patterns."""


class DirectListener:
    """Serves this process's subscriptions to direct peers (see the module docstring)."""

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        self.config = DirectConfig.from_url(url, options, listening=True)
        self.capabilities = Capabilities(
            max_payload=self.config.max_payload, ordered_by_key=True, no_responders=True
        )
        self._hub = Hub(f"listener:{url}")
        self._node = f"{os.uname().nodename}-{os.getpid()}-{id(self):x}"
        self._interests: dict[tuple[str, str | None], list[int]] = {}  # key -> [id, refs]
        self._by_id: dict[int, tuple[str, str | None]] = {}
        self._ids = itertools.count(1)
        self._served: set[Served] = set()
        # cleared when interests change
        self._targets: BoundedCache[tuple[int, ...], _Targets] = BoundedCache()
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._progress = Progress()
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
                reuse_port=self.config.reuse_port or None,
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
        served = Served(conn, self.config.settings.credit, self._progress)
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
        served.forget_replies(self._hub)
        self._served.discard(served)

    def _on_frame(self, served: Served, frame: Frame) -> None:
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

    def _on_pub(self, served: Served, pub: Pub) -> None:
        """A PUB frame of one message: from ``_on_frame``, or straight from the connection's
        read callback when the frame was all that the read brought."""
        if served.backlog:
            served.backlog.append((pub, None, False))
            return
        if pub.request and not (self._closing or self._draining):
            # A request (always alone in its frame) for one local group: queued with the
            # route its reply takes back, no reply-to token registered.
            groups, patterns = self._targets.get(pub.targets) or self._resolve(pub.targets)
            if len(groups) == 1 and not patterns:
                headers = pub.headers
                headers[REPLY_TO] = served.token_prefix + str(pub.seq)
                if CORRELATION_ID not in headers:
                    headers[CORRELATION_ID] = pub.id
                groups[0].enqueue(pub, served.on_take, Answer(served.conn, pub.seq))
                self._progress.made()
                return
        self._take(served, (pub,))

    def _take(self, served: Served, pubs: tuple[Pub, ...], more: bool = False) -> None:
        """Queue a PUB frame's messages locally, in order, and ACCEPT them in one frame (with
        the frames after it when ``more``). One that waits for room in a broadcast
        subscriber's buffer sends it and all that follow to the backlog, which ``_work_off``
        empties."""
        # The usual case in place: a published message for exactly one local group. Runs of
        # messages share one targets tuple (the decoder reuses it), so it is resolved per run.
        last: tuple[int, ...] | None = None
        group: Group | None = None
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
                group.enqueue(pub, on_take)
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
        self._progress.made()

    async def _work_off(self, served: Served) -> None:
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
        groups: list[Group] = []
        patterns: set[str] = set()
        for target in targets:
            key = self._by_id.get(target)
            if key is None:
                continue
            pattern, group = key
            if group is None:
                patterns.add(pattern)
            else:
                groups.append(self._hub.group(pattern, group))
        return self._targets.put(targets, (groups, patterns))

    def _queue_locally(
        self, served: Served, pub: Pub
    ) -> tuple[list[BroadcastSubscriber], bool] | None:
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
            groups[0].enqueue(pub, served.on_take)
        elif groups:
            remaining = [len(groups)]  # credit returns when every group's copy is taken

            def one_taken() -> None:
                remaining[0] -= 1
                if remaining[0] == 0:
                    served.taken()

            for group in groups:
                group.enqueue(pub, one_taken)
        if not patterns:
            return None
        full = self._hub.offer(pub, patterns)
        if full:
            return full, not groups
        if not groups:
            served.taken()
        return None

    def _expect_reply(self, served: Served, pub: Pub) -> None:
        """Give request ``pub`` a reply-to token whose reply goes back on its connection."""
        headers = pub.headers
        headers[REPLY_TO] = served.token_prefix + str(pub.seq)
        if CORRELATION_ID not in headers:
            headers[CORRELATION_ID] = pub.id
        served.expect_reply(self._hub, pub)

    # -- subscriptions -------------------------------------------------------------------------

    async def subscribe(
        self, pattern: str, group: str | None, prefetch: int
    ) -> Member | BroadcastSubscriber:
        key = (pattern, group)
        sub = self._hub.subscriber(
            pattern,
            group,
            max_payload=self.config.max_payload,
            prefetch=prefetch,
            buffer=self.config.buffer,
            on_close=lambda: self._release(key),  # closing it withdraws the interest
        )
        entry = self._interests.get(key)
        if entry is None:
            interest_id = next(self._ids)
            self._interests[key] = [interest_id, 1]
            self._by_id[interest_id] = key
            self._targets.clear()
            await self._announce(Interest(interest_id, pattern, group))
        else:
            entry[1] += 1
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

    def health(self) -> Literal["connecting", "connected", "reconnecting", "closed"]:
        """``connected`` while listening (``ReportsHealth``)."""
        if self._closing or self._draining:
            return "closed"
        if self._server is None:
            return "connecting"
        return "connected" if self._server.is_serving() else "closed"

    # -- closing --------------------------------------------------------------------------------

    async def quiesce(self, timeout: float) -> None:
        """The first step of closing: tell every peer to send nothing new (BYE), then give
        local members up to ``timeout`` seconds to take and settle what this listener already
        accepted (redeliveries included: one nacked with a delay comes at once now), so that
        closing loses nothing that was confirmed to a publisher."""
        self._draining = True  # PUBs still on their way are refused: they go to other members
        self._progress.wanted = True
        self._hub.hurry()  # redeliveries waiting for a delay are handed out before the close
        for served in list(self._served):
            served.accept_deferred()  # what it queued is confirmed before it says goodbye
            with contextlib.suppress(ConnectionLost):
                served.conn.send(Bye("listener is closing"))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while any(s.backlog for s in self._served) or self._hub.holding():
                    self._progress.event.clear()
                    # Set whenever a PUB is handled or a message first taken; a settle or a
                    # redelivery says nothing, so it is looked at again every 50 ms as well.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(0.05):
                            await self._progress.event.wait()

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
