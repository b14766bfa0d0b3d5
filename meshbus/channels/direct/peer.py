"""One peer a dialler keeps a connection to: reconnects, interests, credit, confirms."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import OrderedDict
from collections.abc import Callable

from meshbus.channels.direct.config import DirectConfig
from meshbus.channels.direct.connection import Connection
from meshbus.channels.direct.frames import (
    Accept,
    Bye,
    Credit,
    Frame,
    Hello,
    Interest,
    Pub,
    Refuse,
    Reply,
    Uninterest,
)
from meshbus.errors import AuthenticationFailed, ConnectionLost, ProtocolError
from meshbus.subjects import SubjectIndex
from meshbus.transport import Envelope

__all__ = ["Peer"]

log = logging.getLogger("meshbus.direct")

ACCEPTED, REFUSED, LOST = 1, 2, 3


class Peer:
    """A listener this process dials: its interests, the credit it granted, PUBs in flight."""

    def __init__(
        self,
        host: str,
        port: int,
        config: DirectConfig,
        hello: Hello,
        on_state: Callable[[Peer, bool], None] | None = None,
    ) -> None:
        self.on_state = on_state
        """Called with True when a connection is up, False when one fails or drops."""
        self.host = host
        self.port = port
        self.config = config
        self._hello = hello
        self.conn: Connection | None = None
        self.interests: dict[int, Interest] = {}
        self.index: SubjectIndex[Interest] = SubjectIndex()
        self.ready = asyncio.Event()
        self.changed = asyncio.Event()  # set whenever connections or interests change
        self._credit = 0
        self._credit_waiters: list[asyncio.Future[None]] = []
        self._seq = 0
        self._pending: OrderedDict[int, asyncio.Future[int]] = OrderedDict()
        self._replies: dict[int, asyncio.Future[Reply]] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.last_error = ""

    def __repr__(self) -> str:
        return f"Peer({self.host}:{self.port}, ready={self.ready.is_set()})"

    # -- connection lifecycle --------------------------------------------------------------

    def start(self) -> None:
        """Begin connecting (and reconnecting, with backoff, for as long as it runs)."""
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        delay = self.config.reconnect_min
        while not self._stopping:
            try:
                # The host name is resolved again at every attempt: a restarted container
                # comes back with a new address.
                reader, writer = await asyncio.open_connection(
                    self.host, self.port, ssl=self.config.ssl, limit=1 << 20
                )
                conn = await Connection.establish(reader, writer, self.config.settings, self._hello)
            except (OSError, ProtocolError, AuthenticationFailed, ConnectionError) as exc:
                self.last_error = str(exc) or type(exc).__name__
                self._report(False)
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, self.config.reconnect_max)
                continue
            delay = self.config.reconnect_min
            self._attach(conn)
            self._report(True)
            await conn.closed.wait()
            self._detach(conn.reason)
            if not self._stopping:
                self._report(False)

    def _report(self, up: bool) -> None:
        if self.on_state is not None:
            try:
                self.on_state(self, up)
            except Exception:  # a callback must not stop the reconnect loop
                log.exception("peer state callback failed")

    def _attach(self, conn: Connection) -> None:
        self.conn = conn
        self._credit = conn.peer.credit
        self.interests.clear()
        self.index = SubjectIndex()
        for interest in conn.peer.interests:
            self._add(interest)
        conn.start(self._on_frame)
        self.ready.set()
        self._notify()

    def _detach(self, reason: str) -> None:
        self.ready.clear()
        self.conn = None
        self.last_error = reason
        # The interests stay, as the last known ones: copies owed to this peer wait for it to
        # come back (up to their publish timeout) instead of being dropped unseen.
        pending, self._pending = self._pending, OrderedDict()
        for future in pending.values():
            if not future.done():
                future.set_result(LOST)
        self._idle.set()
        replies, self._replies = self._replies, {}
        for waiter in replies.values():
            if not waiter.done():
                waiter.set_exception(ConnectionLost(f"{self.host}:{self.port}: {reason}"))
        self._wake_credit()
        self._notify()

    def _notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    async def stop(self) -> None:
        """Close the connection and stop reconnecting."""
        self._stopping = True
        if self.conn is not None:
            await self.conn.close("dialler closing")
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # -- frames from the listener ----------------------------------------------------------

    def _add(self, interest: Interest) -> None:
        self.interests[interest.id] = interest
        self.index.add(interest.pattern, interest)

    def _on_frame(self, frame: Frame) -> None:
        if isinstance(frame, Accept):
            pending = self._pending
            while pending:
                seq, future = next(iter(pending.items()))
                if seq > frame.seq:
                    break
                del pending[seq]
                if not future.done():
                    future.set_result(ACCEPTED)
            if not pending:
                self._idle.set()
        elif isinstance(frame, Credit):
            self._credit += frame.messages
            self._wake_credit()
        elif isinstance(frame, Refuse):
            refused = self._pending.pop(frame.seq) if frame.seq in self._pending else None
            if refused is not None and not refused.done():
                refused.set_result(REFUSED)
            if not self._pending:
                self._idle.set()
        elif isinstance(frame, Reply):
            waiter = self._replies.pop(frame.seq, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(frame)
        elif isinstance(frame, Interest):
            self._add(frame)
            self._notify()
        elif isinstance(frame, Uninterest):
            gone = self.interests.pop(frame.id, None)
            if gone is not None:
                self.index.remove(gone.pattern, gone)
            self._notify()
        elif isinstance(frame, Bye):
            self.ready.clear()  # draining: send it nothing new

    # -- sending ---------------------------------------------------------------------------

    def _wake_credit(self) -> None:
        waiters, self._credit_waiters = self._credit_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def send(
        self, envelope: Envelope, targets: tuple[int, ...], request: bool = False
    ) -> tuple[asyncio.Future[int], asyncio.Future[Reply] | None]:
        """Send one PUB once credit allows; return futures for its fate (ACCEPTED, REFUSED or
        LOST) and, for a request, its reply."""
        while self._credit <= 0:
            if self.conn is None or not self.ready.is_set():
                raise ConnectionLost(f"{self.host}:{self.port} is not connected")
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._credit_waiters.append(waiter)
            await waiter
        conn = self.conn
        if conn is None or not self.ready.is_set():
            raise ConnectionLost(f"{self.host}:{self.port} is not connected")
        self._credit -= 1
        self._seq += 1
        seq = self._seq
        loop = asyncio.get_running_loop()
        fate: asyncio.Future[int] = loop.create_future()
        self._pending[seq] = fate
        self._idle.clear()
        reply: asyncio.Future[Reply] | None = None
        if request:
            reply = loop.create_future()
            self._replies[seq] = reply
        conn.send(
            Pub(
                seq=seq,
                subject=envelope.subject,
                data=envelope.data,
                targets=targets,
                headers=envelope.headers,
                key=envelope.key,
                id=envelope.id,
                request=request,
            )
        )
        await conn.drain()
        return fate, reply

    async def wait_idle(self) -> None:
        """Return once no PUB is waiting for its ACCEPT or REFUSE (or the connection is gone)."""
        await self._idle.wait()

    def forget_reply(self, future: asyncio.Future[Reply]) -> None:
        """Drop a reply nobody waits for any more."""
        for seq, waiter in list(self._replies.items()):
            if waiter is future:
                del self._replies[seq]
