"""One direct-channel connection: hello exchange, framed reads and coalesced writes,
heartbeats, and PING barriers."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
import logging
from collections.abc import Awaitable, Callable

from meshbus.channels.direct.frames import (
    DEFAULT_MAX_FRAME,
    Bye,
    Frame,
    FrameDecoder,
    Hello,
    Ping,
    Pong,
    encode,
)
from meshbus.errors import AuthenticationFailed, ConnectionLost, ProtocolError

__all__ = ["Connection", "ConnectionSettings"]

log = logging.getLogger("meshbus.direct")

AUTH_REFUSED = "authentication failed"
_HIGH_WATER = 256 * 1024
_READ_SIZE = 256 * 1024


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


Handler = Callable[[Frame], Awaitable[None] | None]


class Connection:
    """A framed, heartbeated connection to one peer, after a successful hello.

    Frames other than PING/PONG go to ``handler`` in arrival order. ``closed`` is set when the
    connection ends, for any reason (``reason`` says which).
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        settings: ConnectionSettings,
        peer_hello: Hello,
        decoder: FrameDecoder,
        leftover: list[Frame],
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.settings = settings
        self.peer = peer_hello
        self.name = f"{peer_hello.node}@{writer.get_extra_info('peername')}"
        self._decoder = decoder
        self._leftover = leftover
        self._nonces = itertools.count(1)
        self._pings: dict[int, asyncio.Future[None]] = {}
        self._last_heard = asyncio.get_running_loop().time()
        self.closed = asyncio.Event()
        self.reason = ""
        self._tasks: list[asyncio.Task[None]] = []
        self._out: list[bytes] = []
        self._out_size = 0
        self._flush_due = False

    # -- setup ---------------------------------------------------------------------------------

    @classmethod
    async def establish(
        cls,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        settings: ConnectionSettings,
        hello: Hello,
        *,
        accepting: bool = False,
    ) -> Connection:
        """Exchange hellos; raise ``ProtocolError`` / ``AuthenticationFailed`` (and close the
        socket) when the peer's is not acceptable.

        The dialling side speaks first, with the token. The accepting side (a listener) says
        nothing — neither its subscriptions nor anything else — until the peer's hello and
        token have been checked, and never sends the token itself.
        """
        decoder = FrameDecoder(settings.max_frame)
        try:
            if not accepting:
                writer.writelines(encode(hello))
            async with asyncio.timeout(settings.hello_timeout):
                frames: list[Frame] = []
                while not frames:
                    data = await reader.read(_READ_SIZE)
                    if not data:
                        raise ProtocolError("peer closed the connection before its hello")
                    frames = decoder.feed(data)
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
                    writer.writelines(encode(Bye(f"{AUTH_REFUSED}: wrong or missing token")))
                raise AuthenticationFailed("peer's hello carries a wrong or missing token")
            if accepting:
                writer.writelines(encode(hello))
        except TimeoutError:
            writer.close()
            raise ProtocolError(
                f"peer said nothing within {settings.hello_timeout:g} s (no hello)"
            ) from None
        except BaseException:
            writer.close()
            raise
        return cls(reader, writer, settings, first, decoder, rest)

    def start(self, handler: Handler) -> None:
        """Begin reading (frames go to ``handler``) and heartbeating."""
        self._tasks = [
            asyncio.create_task(self._read_loop(handler)),
            asyncio.create_task(self._heartbeat()),
        ]

    # -- sending -------------------------------------------------------------------------------

    def send(self, frame: Frame, *, now: bool = False) -> None:
        """Queue ``frame``; frames queued in one turn of the event loop (or while one read's
        frames are handled) go out in one write. ``now`` writes it, and what is queued, at
        once."""
        if self.closed.is_set():
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
        if self.closed.is_set():
            raise ConnectionLost(f"connection to {self.name} is closed: {self.reason}")
        if self._out:
            self._out.append(frame)
            self._flush()
        else:
            self.writer.write(frame)

    def _flush(self) -> None:
        self._flush_due = False
        if self._out and not self.closed.is_set():
            out, self._out, self._out_size = self._out, [], 0
            self.writer.writelines(out)

    async def drain(self) -> None:
        """Wait while more than the high-water mark is buffered for writing."""
        if self._out_size >= 256:
            self._flush()
        transport = self.writer.transport
        if transport.get_write_buffer_size() > _HIGH_WATER:
            try:
                await self.writer.drain()
            except (ConnectionError, RuntimeError) as exc:
                self._end(f"write failed: {exc}")
                raise ConnectionLost(f"connection to {self.name} lost: {exc}") from exc

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

    # -- the loops -----------------------------------------------------------------------------

    async def _read_loop(self, handler: Handler) -> None:
        reason = "peer closed the connection"
        try:
            pending = self._leftover
            self._leftover = []
            while True:
                for frame in pending:
                    if isinstance(frame, Ping):
                        self.send(Pong(frame.nonce))
                    elif isinstance(frame, Pong):
                        waiter = self._pings.get(frame.nonce)
                        if waiter is not None and not waiter.done():
                            waiter.set_result(None)
                    elif isinstance(frame, Bye):
                        reason = f"peer said bye: {frame.reason}"
                        result = handler(frame)
                        if result is not None:
                            await result
                    else:
                        result = handler(frame)
                        if result is not None:
                            await result
                if self._out:
                    self._flush()  # ACCEPTs go out before local subscribers get to run
                data = await self.reader.read(_READ_SIZE)
                if not data:
                    break
                self._last_heard = asyncio.get_running_loop().time()
                pending = self._decoder.feed(data)
        except ProtocolError as exc:
            reason = f"protocol error: {exc}"
            log.warning("closing direct connection to %s: %s", self.name, exc)
        except (ConnectionError, OSError) as exc:
            reason = f"connection error: {exc}"
        except asyncio.CancelledError:
            reason = self.reason or "closed"
            raise
        finally:
            self._end(reason)

    async def _heartbeat(self) -> None:
        interval = self.settings.heartbeat
        loop = asyncio.get_running_loop()
        while not self.closed.is_set():
            await asyncio.sleep(interval)
            silent = loop.time() - self._last_heard
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
        self.closed.set()
        for waiter in self._pings.values():
            if not waiter.done():
                waiter.set_exception(ConnectionLost(f"connection to {self.name} lost: {reason}"))
        self.writer.close()
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()

    async def close(self, reason: str = "closing") -> None:
        """Say bye, close the socket and stop the loops (idempotent)."""
        if not self.closed.is_set():
            with contextlib.suppress(ConnectionLost, RuntimeError):
                self.send(Bye(reason))
        self._end(reason)
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()
