"""One direct-channel connection: hello exchange, framed reads into a preallocated buffer,
coalesced writes, heartbeats, and PING barriers.

:class:`Wire` is the socket side (an ``asyncio.BufferedProtocol``): bytes land in one buffer that
is reused, frames are cut from it where they lie, and a buffer larger than the usual one is
made only for a frame whose length has passed the largest-frame check. Frames go to the
connection's handler from the read callback itself, with no task in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
import logging
import os
from collections.abc import Callable
from typing import cast

from meshbus import _clock
from meshbus._aio import vectored_write, writable_fd
from meshbus.channels.direct.frames import (
    DEFAULT_MAX_FRAME,
    Bye,
    Frame,
    FrameDecoder,
    FrameType,
    Hello,
    Ping,
    Pong,
    Pub,
    encode,
    lone_pub,
)
from meshbus.channels.direct.frames import REPLY_HEAD as _REPLY_HEAD
from meshbus.channels.direct.frames import SMALL_FRAME as _SMALL_FRAME
from meshbus.errors import AuthenticationFailed, ConnectionLost, ProtocolError

__all__ = ["READ_SIZE", "Connection", "ConnectionSettings", "SilentPeer", "Wire"]

log = logging.getLogger("meshbus.direct")

AUTH_REFUSED = "authentication failed"
_HIGH_WATER = 256 * 1024
_MAX_PARTS = 512  # pieces a frame may have for write_parts to give them to one writev
READ_SIZE = 256 * 1024
"""The usual read buffer: a frame that fits is cut where it lies; a larger one gets its own."""
_MIN_ROOM = 64 * 1024
_CLOSED = "peer closed the connection"
_REPLY, _PUB = int(FrameType.REPLY), int(FrameType.PUB)


class SilentPeer(ProtocolError):
    """The peer closed the connection without sending a byte: a port probe (a healthcheck,
    ``meshbus doctor``), not a meshbus peer that got something wrong."""


class ConnectionSettings:
    """What both ends of a direct connection are configured with."""

    def __init__(
        self,
        *,
        token: str | None = None,
        heartbeat: float = 5.0,
        hello_timeout: float = 5.0,
        max_frame: int = DEFAULT_MAX_FRAME,
        credit: int = 1024,
    ) -> None:
        self.token = token
        self.heartbeat = heartbeat
        self.hello_timeout = hello_timeout
        self.max_frame = max_frame
        self.credit = credit


Handler = Callable[[Frame], None]


class Wire(asyncio.BufferedProtocol):
    """The socket side of one connection (see the module docstring).

    Until a :class:`Connection` takes it over, frames are kept in ``frames`` for the hello
    exchange; afterwards they go to ``sink`` as they are cut.
    """

    def __init__(self, max_frame: int, on_made: Callable[[Wire], None] | None = None) -> None:
        self.decoder = FrameDecoder(max_frame)
        self._max_frame = max_frame
        self.on_made = on_made
        self.transport: asyncio.Transport | None = None
        self.frames: list[Frame] = []
        self.sink: Callable[[list[Frame]], None] | None = None
        # Set by the connection once it has taken over: a frame that is the whole of what is
        # unread, of the two kinds a round trip is made of, goes straight to these, past the
        # decoder's loop and the frame handlers (see buffer_updated).
        self.on_reply: Callable[[int, bytes], None] | None = None
        self.on_pub: Callable[[Pub], None] | None = None
        self.on_fault: Callable[[Exception], None] | None = None
        self.on_lost: Callable[[str], None] | None = None
        self.lost: str | None = None  # why the connection ended (None while it is up)
        self.error: ProtocolError | None = None
        self.heard = False  # a read since the heartbeat last looked (it clears this)
        self.received = 0  # bytes so far (a peer that closes having sent none is a probe)
        self.paused = False
        loop = asyncio.get_running_loop()
        self.gone: asyncio.Future[None] = loop.create_future()
        self._buffer = self._usual = bytearray(READ_SIZE)
        self._whole = memoryview(self._usual)  # get_buffer's answer when nothing is pending
        self._start = 0  # unread bytes are _buffer[_start:_end]
        self._end = 0
        self._wanted = 0  # the full size of the incomplete frame at _start, when known
        self._waiters: list[asyncio.Future[None]] = []

    # -- asyncio.BufferedProtocol ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport by its interface, not its class: uvloop's (TCPTransport, its TLS
        # transport) do not derive from asyncio.Transport, yet offer all of its methods.
        self.transport = stream = cast(asyncio.Transport, transport)
        stream.set_write_buffer_limits(high=_HIGH_WATER)
        if self.on_made is not None:
            self.on_made(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        if not self._end and self._buffer is self._usual:
            return self._whole[:]  # the usual case: every byte read was used (a view of its
            # own, which the event loop may release)
        pending = self._end - self._start
        if self._wanted > len(self._buffer):
            # A frame larger than the buffer, its length already checked: room for all of it.
            bigger = bytearray(self._wanted)
            bigger[:pending] = self._buffer[self._start : self._end]
            self._buffer, self._start, self._end = bigger, 0, pending
        elif len(self._buffer) > READ_SIZE and max(pending, self._wanted) <= READ_SIZE // 2:
            smaller = self._usual  # the big frame is gone: give the memory back
            smaller[:pending] = self._buffer[self._start : self._end]
            self._buffer, self._start, self._end = smaller, 0, pending
        elif len(self._buffer) - self._end < max(_MIN_ROOM, self._wanted - pending):
            self._buffer[:pending] = self._buffer[self._start : self._end]
            self._start, self._end = 0, pending
        return memoryview(self._buffer)[self._end :]

    def buffer_updated(self, nbytes: int) -> None:
        end = self._end = self._end + nbytes
        self.heard = True
        start = self._start
        if end - start >= 15 and self.on_fault is not None:
            # One whole frame and nothing else, the usual read of a round trip: a REPLY
            # without headers (a requester's answer) or a PUB of one message (a request).
            # (Only after the hello: ``received`` is counted below, for what comes before.)
            buffer = self._buffer
            length, kind, seq, n_headers = _REPLY_HEAD.unpack_from(buffer, start)
            if start + 4 + length == end and length <= self._max_frame:
                try:
                    if kind == _REPLY and not n_headers and self.on_reply is not None:
                        data = bytes(buffer[start + 15 : end])
                        self._start = self._end = 0
                        self.on_reply(seq, data)
                        return
                    if kind == _PUB and length <= _SMALL_FRAME and self.on_pub is not None:
                        pub = lone_pub(bytes(buffer[start + 5 : end]))
                        if pub is not None:
                            self._start = self._end = 0
                            self.on_pub(pub)
                            return
                except ProtocolError as exc:
                    self._fail(exc)
                    return
                except Exception as exc:
                    self.on_fault(exc)
                    return
        self.received += nbytes
        try:
            frames, self._start, self._wanted = self.decoder.cut(
                self._buffer, self._start, self._end
            )
        except ProtocolError as exc:
            self._fail(exc)
            return
        if self._start == self._end:
            self._start = self._end = 0
        if not frames:
            return
        if self.sink is not None:
            self.sink(frames)
        else:
            self.frames.extend(frames)
            self._wake()

    def eof_received(self) -> bool | None:
        return None  # close

    def connection_lost(self, exc: Exception | None) -> None:
        reason = _CLOSED if exc is None else f"connection error: {exc}"
        if self.lost is None:
            self.lost = reason
        if not self.gone.done():
            self.gone.set_result(None)
        self._wake()
        if self.on_lost is not None:
            self.on_lost(self.lost)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self._wake()

    # -- for the connection ----------------------------------------------------------------

    def _fail(self, exc: ProtocolError) -> None:
        self.error = exc
        self.lost = f"protocol error: {exc}"
        if self.on_lost is not None:
            self.on_lost(self.lost)
        else:
            self._wake()
        if self.transport is not None:
            self.transport.close()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def changed(self) -> None:
        """Wait until frames arrive, writing may resume, or the connection ends."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await waiter

    async def first_frames(self) -> list[Frame]:
        """The frames received so far, waiting for at least one (hello phase)."""
        while not self.frames:
            if self.error is not None:
                raise ProtocolError(str(self.error))
            if self.lost is not None:
                if not self.received and self.lost == _CLOSED:
                    raise SilentPeer("peer closed the connection without a word")
                raise ProtocolError(f"peer closed the connection before its hello ({self.lost})")
            await self.changed()
        frames, self.frames = self.frames, []
        return frames


class Connection:
    """A framed, heartbeated connection to one peer, after a successful hello.

    Frames other than PING/PONG go to ``handler`` in arrival order, from the read callback.
    ``closed`` is set when the connection ends, for any reason (``reason`` says which).
    """

    def __init__(
        self, wire: Wire, settings: ConnectionSettings, peer_hello: Hello, leftover: list[Frame]
    ) -> None:
        assert wire.transport is not None
        self.wire = wire
        self.transport = wire.transport
        self.settings = settings
        self.peer = peer_hello
        self.name = f"{peer_hello.node}@{self.transport.get_extra_info('peername')}"
        self._leftover = leftover
        self._handler: Handler | None = None
        self._nonces = itertools.count(1)
        self._pings: dict[int, asyncio.Future[None]] = {}
        self._bye = ""
        self.closed = asyncio.Event()
        self.ended = False  # closed.is_set(), as a plain attribute for the per-frame paths
        self.reason = ""
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._out: list[bytes] = []
        # The socket's descriptor, for write_parts, where the transport is a plain socket's
        # (asyncio's selector transport; not TLS, not any other event loop's); else, where
        # the transport's own writelines is a writev of the pieces (uvloop's), that.
        self._fd = writable_fd(self.transport)
        self._writelines = None if self._fd is not None else vectored_write(self.transport)
        self._out_size = 0
        self._flush_due = False

    # -- setup ---------------------------------------------------------------------------------

    @classmethod
    async def establish(
        cls, wire: Wire, settings: ConnectionSettings, hello: Hello, *, accepting: bool = False
    ) -> Connection:
        """Exchange hellos; raise ``ProtocolError`` / ``AuthenticationFailed`` (and close the
        socket) when the peer's is not acceptable.

        The dialling side speaks first, with the token. The accepting side (a listener) says
        nothing — neither its subscriptions nor anything else — until the peer's hello and
        token have been checked, and never sends the token itself.
        """
        transport = wire.transport
        assert transport is not None
        try:
            if not accepting:
                transport.write(b"".join(encode(hello)))
            async with asyncio.timeout(settings.hello_timeout):
                frames = await wire.first_frames()
            first, rest = frames[0], frames[1:]
            if isinstance(first, Bye):
                if first.reason.startswith(AUTH_REFUSED):
                    raise AuthenticationFailed(f"the listener refused this peer: {first.reason}")
                raise ProtocolError(f"the listener refused this peer: {first.reason}")
            if not isinstance(first, Hello):
                raise ProtocolError(f"peer sent {type(first).__name__} before its hello")
            if (
                accepting
                and settings.token is not None
                and not hmac.compare_digest((first.token or "").encode(), settings.token.encode())
            ):
                with contextlib.suppress(Exception):
                    transport.write(
                        b"".join(encode(Bye(f"{AUTH_REFUSED}: wrong or missing token")))
                    )
                raise AuthenticationFailed("peer's hello carries a wrong or missing token")
            if accepting:
                transport.write(b"".join(encode(hello)))
        except TimeoutError:
            transport.close()
            raise ProtocolError(
                f"peer said nothing within {settings.hello_timeout:g} s (no hello)"
            ) from None
        except BaseException:
            transport.close()
            raise
        return cls(wire, settings, first, rest)

    def start(
        self,
        handler: Handler,
        *,
        on_reply: Callable[[int, bytes], None] | None = None,
        on_pub: Callable[[Pub], None] | None = None,
    ) -> None:
        """Begin handing frames to ``handler``, and heartbeating. Where given, ``on_reply``
        (seq, data) takes a REPLY without headers, and ``on_pub`` a PUB frame's one message,
        when the frame is all a read brought (see ``Wire``); ``handler`` gets the rest."""
        self._handler = handler
        self._heartbeat_task = asyncio.create_task(self._heartbeat())
        wire = self.wire
        pending = self._leftover + wire.frames
        self._leftover, wire.frames = [], []
        wire.sink = self._on_frames
        wire.on_reply, wire.on_pub, wire.on_fault = on_reply, on_pub, self._fault
        wire.on_lost = self._lost
        if pending:
            self._on_frames(pending)
        if wire.lost is not None:
            self._lost(wire.lost)

    # -- sending -------------------------------------------------------------------------------

    def send(self, frame: Frame, *, now: bool = False) -> None:
        """Queue ``frame``; frames queued in one turn of the event loop go out in one write.
        ``now`` writes it, and what is queued, at once."""
        if self.ended:
            raise ConnectionLost(f"connection to {self.name} is closed: {self.reason}")
        self._out.extend(encode(frame))
        self._out_size += 1
        if now:
            self._flush()
        elif not self._flush_due:
            self._flush_due = True
            asyncio.get_running_loop().call_soon(self._flush)

    def write(self, frame: bytes) -> None:
        """Write an encoded frame now, after whatever was queued before it."""
        if self.ended:
            raise ConnectionLost(f"connection to {self.name} is closed: {self.reason}")
        if self._out:
            self._out.append(frame)
            self._flush()
        else:
            self.transport.write(frame)

    def write_parts(self, parts: list[bytes]) -> None:
        """``write`` of an encoded frame given in pieces. Where nothing is waiting to be
        written before it, the frame goes out with one ``writev`` of its pieces (up to
        ``_MAX_PARTS`` of them), so the payloads are not first copied into one buffer (a large
        part of a 16 KiB publisher's work per message). Otherwise, and for
        what the socket does not take, the pieces are joined and written the usual way.
        On uvloop the transport's own ``writelines`` does the same (see ``meshbus._aio``)."""
        if self.ended:
            raise ConnectionLost(f"connection to {self.name} is closed: {self.reason}")
        fd = self._fd
        if (
            fd is not None
            and len(parts) <= _MAX_PARTS
            and not self._out
            and not self.transport.get_write_buffer_size()
            and not self.transport.is_closing()
        ):
            try:
                sent = os.writev(fd, parts)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                sent = 0  # the transport meets the error on its own write, and ends as usual
            if not sent:
                self.transport.write(b"".join(parts))
                return
            for at, part in enumerate(parts):
                if sent < len(part):
                    rest: list[bytes | memoryview] = [memoryview(part)[sent:], *parts[at + 1 :]]
                    self.transport.write(b"".join(rest))
                    return
                sent -= len(part)
            return
        writelines = self._writelines
        if writelines is not None and len(parts) <= _MAX_PARTS:
            if self._out:
                self._flush()  # what was queued goes first
            writelines(parts)
            return
        self.write(b"".join(parts))

    def _flush(self) -> None:
        self._flush_due = False
        if self._out and not self.transport.is_closing():
            out, self._out, self._out_size = self._out, [], 0
            self.transport.write(b"".join(out))

    async def drain(self) -> None:
        """Wait while more than the high-water mark is buffered for writing."""
        if self._out_size >= 256:
            self._flush()
        while self.wire.paused:
            if self.closed.is_set():
                raise ConnectionLost(f"connection to {self.name} lost: {self.reason}")
            await self.wire.changed()

    async def barrier(self, timeout: float) -> None:
        """Return once the peer has processed every frame sent before this call."""
        nonce = next(self._nonces)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pings[nonce] = future
        try:
            self.send(Ping(nonce))
            async with asyncio.timeout(timeout):
                await asyncio.shield(future)
        finally:
            self._pings.pop(nonce, None)

    # -- receiving -----------------------------------------------------------------------------

    def _on_frames(self, frames: list[Frame]) -> None:
        handler = self._handler
        assert handler is not None
        try:
            for frame in frames:
                if isinstance(frame, Ping):
                    self.send(Pong(frame.nonce))
                elif isinstance(frame, Pong):
                    waiter = self._pings.get(frame.nonce)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(None)
                else:
                    if isinstance(frame, Bye):
                        self._bye = f"peer said bye: {frame.reason}"
                    handler(frame)
                if self.ended:
                    return
        except Exception as exc:
            self._fault(exc)

    def _fault(self, exc: Exception) -> None:
        """A frame's handler raised: end the connection, unless it had ended already."""
        if isinstance(exc, ConnectionLost):
            return  # the connection ended while a frame was handled
        log.error(
            "closing direct connection to %s: a frame could not be handled",
            self.name,
            exc_info=exc,
        )
        self._end(f"frame not handled: {exc!r}")

    def _lost(self, reason: str) -> None:
        if self.wire.error is not None:
            log.warning("closing direct connection to %s: %s", self.name, self.wire.error)
        self._end(self._bye or reason)

    async def _heartbeat(self) -> None:
        interval = self.settings.heartbeat
        loop = asyncio.get_running_loop()
        wire = self.wire
        last_heard = loop.time()  # the hello, just now
        while not self.closed.is_set():
            await _clock.sleep(interval)  # not in the event loop's heap (see meshbus._clock)
            now = loop.time()
            # Reads are not timed one by one (a clock read each, on both ends of every
            # connection): a beat that finds one since the last counts as hearing the peer
            # now. A silent peer is so found between 3 and 4 beats after its last word.
            if wire.heard:
                wire.heard = False
                last_heard = now
            silent = now - last_heard
            if silent > 3 * interval:
                log.warning("closing direct connection to %s: silent for %.1f s", self.name, silent)
                self._end(f"peer silent for {silent:.1f} s")
                return
            if silent > interval:
                with contextlib.suppress(ConnectionLost):
                    self.send(Ping(0))

    # -- ending --------------------------------------------------------------------------------

    def _end(self, reason: str) -> None:
        if self.closed.is_set():
            return
        self._flush()  # what was queued (a BYE, ACCEPTs) still goes out before the close
        self.reason = reason
        self.ended = True
        self.closed.set()
        for waiter in self._pings.values():
            if not waiter.done():
                waiter.set_exception(ConnectionLost(f"connection to {self.name} lost: {reason}"))
        self.wire.sink = self.wire.on_reply = self.wire.on_pub = self.wire.on_fault = None
        self.wire.on_lost = None
        self.transport.close()
        self.wire._wake()  # a drain() waiting for room sees the end
        task = self._heartbeat_task
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def close(self, reason: str = "closing") -> None:
        """Say bye, close the socket and stop heartbeating (idempotent)."""
        if not self.closed.is_set():
            with contextlib.suppress(ConnectionLost, RuntimeError):
                self.send(Bye(reason))
        self._end(reason)
        if self._heartbeat_task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._heartbeat_task
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await asyncio.shield(self.wire.gone)
