"""One peer a dialler keeps a connection to: reconnects, interests, credit, confirms."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque
from collections.abc import Callable, Sequence

from meshbus.channels.direct.config import DirectConfig
from meshbus.channels.direct.connection import READ_SIZE, Connection, Wire
from meshbus.channels.direct.frames import (
    REFUSE_CLOSING,
    Accept,
    Bye,
    Credit,
    Frame,
    Hello,
    Interest,
    Refuse,
    Reply,
    Uninterest,
    encode_one,
    encode_pub_parts,
)
from meshbus.errors import AuthenticationFailed, ConnectionLost, ProtocolError
from meshbus.subjects import SubjectIndex
from meshbus.transport import Envelope

__all__ = ["Batch", "Peer", "Refused"]

log = logging.getLogger("meshbus.direct")

ACCEPTED, REFUSED, LOST = 1, 2, 3

PUB_FRAME_TARGET = READ_SIZE
"""Where ``send`` cuts a run of messages into PUB frames (one larger message still goes alone
in a frame of its own, up to the peer's largest frame): a frame that fits the listener's usual
read buffer is read in place, and handled and ACCEPTed while the next one is on its way. One
frame of a whole 256-message batch of 16 KiB made the listener grow its buffer for it, and
the publisher wait for all of it to be read before the first ACCEPT: 0.6-0.8x the raw rate
against 1.04x."""

Item = tuple[Envelope, tuple[int, ...], bool]
"""A message for one peer: the envelope, the peer's interests it is for, whether a request."""


class Refused(Exception):
    """A listener refused a request (``code`` is the REFUSE code)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


class Batch:
    """The PUBs of one frame, ``first`` to ``last``; ``done`` resolves once the peer has
    ACCEPTed ``last`` (each is then accepted unless refused) or the connection is gone."""

    __slots__ = ("accepted", "done", "first", "last", "refused")

    def __init__(self, first: int, last: int, done: asyncio.Future[None]) -> None:
        self.first = first
        self.last = last
        self.accepted = first - 1  # every seq up to this one that was not refused is taken
        self.refused: dict[int, int] | None = None  # seq -> REFUSE code
        self.done = done

    @property
    def all_accepted(self) -> bool:
        """Every message of the batch was taken."""
        return self.accepted >= self.last and not self.refused

    def fate(self, seq: int) -> int:
        """ACCEPTED, REFUSED or LOST (once ``done``). A message refused because its listener
        is closing counts as LOST: it is owed to whoever takes over there, like one lost with
        its connection, and is not dropped when no other member is connected."""
        if self.refused is not None and seq in self.refused:
            return LOST if self.refused[seq] == REFUSE_CLOSING else REFUSED
        return ACCEPTED if seq <= self.accepted else LOST

    def settle(self) -> None:
        if not self.done.done():
            self.done.set_result(None)


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
        self.on_change: Callable[[], None] | None = None
        """Called whenever connections or interests change (a routing cache is stale)."""
        self.host = host
        self.port = port
        self.config = config
        self._hello = hello
        self.conn: Connection | None = None
        self.interests: dict[int, Interest] = {}
        self.index: SubjectIndex[Interest] = SubjectIndex()
        self.ready = asyncio.Event()
        self.up = False  # ready.is_set(), as a plain attribute for the per-message paths
        self.changed = asyncio.Event()  # set whenever connections or interests change
        self._credit = 0
        self._credit_waiters: list[asyncio.Future[None]] = []
        self.seq = 0  # of the last PUB message sent
        self._pending: deque[Batch] = deque()
        self._replies: dict[int, asyncio.Future[Reply]] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop  # set by start()
        self._stopping = False
        self.last_error = ""

    def __repr__(self) -> str:
        return f"Peer({self.host}:{self.port}, ready={self.ready.is_set()})"

    # -- connection lifecycle --------------------------------------------------------------

    def start(self) -> None:
        """Begin connecting (and reconnecting, with backoff, for as long as it runs)."""
        # Kept: asyncio.get_running_loop() costs a getpid() system call each time.
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        delay = self.config.reconnect_min
        while not self._stopping:
            try:
                # The host name is resolved again at every attempt: a restarted container
                # comes back with a new address.
                _, wire = await asyncio.get_running_loop().create_connection(
                    lambda: Wire(self.config.settings.max_frame),
                    self.host,
                    self.port,
                    ssl=self.config.ssl,
                )
                conn = await Connection.establish(wire, self.config.settings, self._hello)
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
        conn.start(self._on_frame, on_reply=self._on_reply)
        self.ready.set()
        self.up = True
        self._notify()

    def _detach(self, reason: str) -> None:
        self.ready.clear()
        self.up = False
        self.conn = None
        self.last_error = reason
        # The interests stay, as the last known ones: copies owed to this peer wait for it to
        # come back (up to their publish timeout) instead of being dropped unseen.
        pending, self._pending = self._pending, deque()
        for batch in pending:
            batch.settle()  # what was not ACCEPTed is LOST
        self._idle.set()
        replies, self._replies = self._replies, {}
        for waiter in replies.values():
            if not waiter.done():
                waiter.set_exception(ConnectionLost(f"{self.host}:{self.port}: {reason}"))
        self._wake_credit()
        self._notify()

    def _notify(self) -> None:
        if self.on_change is not None:
            self.on_change()
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

    def _on_reply(self, seq: int, data: bytes) -> None:
        """A REPLY without headers, from the connection's read callback (see ``Wire``)."""
        waiter = self._replies.pop(seq, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(Reply(seq, data, {}))

    def _on_frame(self, frame: Frame) -> None:
        if isinstance(frame, Accept):
            pending = self._pending
            seq = frame.seq
            while pending:
                batch = pending[0]
                if batch.last > seq:
                    if seq >= batch.first:
                        batch.accepted = seq
                    break
                pending.popleft()
                batch.accepted = batch.last
                batch.settle()
            if not pending:
                self._idle.set()
        elif isinstance(frame, Reply):
            waiter = self._replies.pop(frame.seq, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(frame)
        elif isinstance(frame, Credit):
            self._credit += frame.messages
            self._wake_credit()
        elif isinstance(frame, Refuse):
            waiter = self._replies.pop(frame.seq, None)
            if waiter is not None:  # a request: it is asked again elsewhere (or later)
                if not waiter.done():
                    waiter.set_exception(Refused(frame.code, frame.reason))
                return
            for batch in self._pending:
                if batch.first <= frame.seq <= batch.last:
                    if batch.refused is None:
                        batch.refused = {}
                    batch.refused[frame.seq] = frame.code
                    break
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
            self.up = False
            self._notify()

    # -- sending ---------------------------------------------------------------------------

    def _wake_credit(self) -> None:
        waiters, self._credit_waiters = self._credit_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _take_credit(self) -> Connection:
        while self._credit <= 0:
            if self.conn is None or not self.ready.is_set():
                raise ConnectionLost(f"{self.host}:{self.port} is not connected")
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._credit_waiters.append(waiter)
            await waiter
        conn = self.conn
        if conn is None or not self.ready.is_set():
            raise ConnectionLost(f"{self.host}:{self.port} is not connected")
        return conn

    async def send(self, items: Sequence[Item], sent: list[tuple[Batch, int]]) -> None:
        """Send ``items`` in PUB frames as credit allows (each frame as large as the credit,
        ``PUB_FRAME_TARGET``, the peer's largest frame and ``MAX_PUBS`` let it be). Each
        frame's ``Batch`` and the index of its first item are appended to ``sent`` as they go
        out, so the caller knows what went when this raises ``ConnectionLost`` part way."""
        loop = asyncio.get_running_loop()
        at = 0
        while at < len(items):
            conn = await self._take_credit()
            end = min(len(items), at + self._credit)
            first = self.seq + 1
            limit = min(conn.peer.max_frame, PUB_FRAME_TARGET)
            # The frames of one send go out back to back (waiting for credit and room in the
            # socket, never for an ACCEPT): all but the last are marked MORE, and the listener
            # confirms them together, waking this process once per send rather than per frame.
            parts, count = encode_pub_parts(first, items[at:end], 0, limit, end < len(items))
            self.seq += count
            self._credit -= count
            batch = Batch(first, self.seq, loop.create_future())
            self._pending.append(batch)
            self._idle.clear()
            conn.write_parts(parts)
            sent.append((batch, at))
            at += count
            await conn.drain()

    def send_request(
        self, envelope: Envelope, targets: tuple[int, ...]
    ) -> asyncio.Future[Reply] | None:
        """Send one request PUB if credit and the connection allow it now; return the future
        of its reply (None when it was not sent). Its seq is ``self.seq`` until the next."""
        conn = self.conn
        if self._credit <= 0 or conn is None or not self.up:
            return None
        seq = self.seq = self.seq + 1
        frame = encode_one(seq, envelope, targets, True)  # max_payload keeps it within max_frame
        self._credit -= 1
        # No Batch: a request is answered by its REPLY (or REFUSE), not ACCEPT.
        reply: asyncio.Future[Reply] = self._loop.create_future()
        self._replies[seq] = reply
        conn.write(frame)
        return reply

    def send_one(self, envelope: Envelope, targets: tuple[int, ...]) -> Batch | None:
        """Send one published message in a PUB frame of its own if credit and the connection
        allow it now; return its batch (None when it was not sent)."""
        conn = self.conn
        if self._credit <= 0 or conn is None or not self.up:
            return None
        seq = self.seq = self.seq + 1
        frame = encode_one(seq, envelope, targets, False)
        self._credit -= 1
        batch = Batch(seq, seq, self._loop.create_future())
        self._pending.append(batch)
        self._idle.clear()
        conn.write(frame)
        return batch

    async def request(self, envelope: Envelope, targets: tuple[int, ...]) -> asyncio.Future[Reply]:
        """Send one request PUB once credit allows; return the future of its reply."""
        while True:
            conn = await self._take_credit()
            reply = self.send_request(envelope, targets)
            if reply is not None:
                await conn.drain()
                return reply

    async def wait_idle(self) -> None:
        """Return once no PUB is waiting for its ACCEPT or REFUSE (or the connection is gone)."""
        await self._idle.wait()

    def forget(self, seq: int) -> None:
        """Drop the reply to request ``seq``, nobody waits for it any more."""
        self._replies.pop(seq, None)

    def forget_reply(self, future: asyncio.Future[Reply]) -> None:
        """Drop a reply nobody waits for any more."""
        for seq, waiter in list(self._replies.items()):
            if waiter is future:
                del self._replies[seq]
