"""What a listener owes each inbound connection: ACCEPTs, credit, and the replies to requests.

A :class:`Served` is one connection a listener accepted. The listener queues the messages of
its PUB frames into the in-process hub (``meshbus.channels.delivery``) with ``Served.taken``
as their ``on_take``, so credit goes back to the publisher as local subscribers take them, and
ACCEPTs what it queued through ``accept``/``accept_later``. A request's reply goes back on the
connection it came on: through an :class:`Answer` given with the message when it is queued for
one local group, or a :class:`ReplySink` registered in the hub under the request's reply-to
token otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable

from meshbus.channels.delivery import BroadcastSubscriber, Hub
from meshbus.channels.direct.connection import Connection
from meshbus.channels.direct.frames import Accept, Credit, Pub, encode_reply
from meshbus.errors import ConnectionLost
from meshbus.transport import Envelope

__all__ = ["DEFERRED_FOR", "Answer", "Progress", "ReplySink", "Served"]

DEFERRED_FOR = 0.005
"""Seconds a deferred ACCEPT waits at most for the frame after its own (see
``Served.accept_later``)."""

_NO_HEADERS: dict[str, str] = {}

Backlogged = tuple[Pub, list[BroadcastSubscriber] | None, bool]
"""A PUB waiting behind one whose broadcast subscriber is full: the subscribers it still waits
for (None when not handled yet), and whether its credit comes back once it is in."""


class Progress:
    """Wakes a listener's ``quiesce`` when a PUB is handled or a message taken; nothing is
    signalled while nobody waits."""

    __slots__ = ("event", "wanted")

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.wanted = False

    def made(self) -> None:
        if self.wanted:
            self.event.set()


class Served:
    """One inbound connection and what it is owed."""

    def __init__(self, conn: Connection, credit: int, progress: Progress) -> None:
        self.conn = conn
        self.progress = progress
        self.backlog: deque[Backlogged] = deque()
        self.owed = 0  # credit earned back, not sent yet
        self.batch = max(1, credit // 4)
        self.replies: set[str] = set()  # reply-to tokens registered in the hub
        self.task: asyncio.Task[None] | None = None  # works off the backlog
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
        unconfirmed), or ``DEFERRED_FOR`` seconds pass without the next frame (a publish
        cancelled between its frames), it goes on its own."""
        self.deferred = seq
        if seq - self.accepted >= self.batch:
            self.accept(seq, now=True)
        elif self.alarm is None:
            self.alarm = asyncio.get_running_loop().call_later(DEFERRED_FOR, self._overdue)

    def _overdue(self) -> None:
        self.alarm = None
        self.accept_deferred()

    def accept_deferred(self) -> None:
        """Send the deferred ACCEPT now, if there is one (the alarm's, or before a BYE)."""
        if self.deferred > self.accepted and not self.conn.ended:
            with contextlib.suppress(ConnectionLost):
                self.accept(self.deferred, now=True)

    def taken(self) -> None:
        """A local subscriber took one of this connection's messages: credit it back."""
        if self.progress.wanted:
            self.progress.event.set()
        self.owed += 1
        if self.owed >= self.batch and not self.conn.ended:
            # At once: a subscriber taking messages in a tight loop would hold back a queued
            # CREDIT until it runs dry, and the publisher with it.
            with contextlib.suppress(ConnectionLost):
                self.conn.send(Credit(self.owed), now=True)
            self.owed = 0

    def expect_reply(self, hub: Hub, pub: Pub) -> None:
        """Register the reply route of request ``pub`` in ``hub`` under its reply-to token
        (set by the listener), for a request queued other than for one local group."""
        token = self.token_prefix + str(pub.seq)
        hub.expect_reply(token, ReplySink(hub, self, token, pub.seq))
        self.replies.add(token)

    def forget_replies(self, hub: Hub) -> None:
        """The connection is gone: nobody waits for its requests' replies."""
        for token in self.replies:
            hub.forget_reply(token)
        self.replies.clear()


class Answer:
    """Sends the reply to a request PUB back on its connection as soon as it is set. A request
    queued for one local group carries it (``Group.enqueue(reply=)``)."""

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
        try:
            self._conn.write(encode_reply(self._seq, data, _NO_HEADERS))
        except ConnectionLost:
            pass


class ReplySink(Answer):
    """An ``Answer`` found by the request's reply-to token in the hub, for a request queued
    any other way (for several groups, or broadcast subscribers); the token goes once it is
    answered, or with its connection."""

    __slots__ = ("_hub", "_served", "_token")

    def __init__(self, hub: Hub, served: Served, token: str, seq: int) -> None:
        super().__init__(served.conn, seq)
        self._hub = hub
        self._served = served
        self._token = token

    def set_result(self, reply: Envelope, /) -> None:
        super().set_result(reply)
        # After the write: the requester is not kept waiting for the bookkeeping.
        self._hub.forget_reply(self._token)
        self._served.replies.discard(self._token)
