"""A loopback TCP proxy for testing reconnection: cut every connection, or refuse new ones for
a while, without touching the server behind it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable

from meshbus._resource import AsyncResource

__all__ = ["TcpProxy", "blocked"]


class TcpProxy(AsyncResource):
    """Forwards ``host:port`` (default ``127.0.0.1``, any free port) to
    ``target_host:target_port``.

    ``cut()`` closes every proxied connection; ``block()`` also stops listening until
    ``unblock()`` listens again on the same port. ``sent`` holds every byte clients sent
    through it, in the order it forwarded them.
    """

    def __init__(
        self, target_host: str, target_port: int, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.target = (target_host, target_port)
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._accepted: set[asyncio.StreamWriter] = set()
        self.sent = bytearray()

    async def start(self) -> TcpProxy:
        """Listen (again, on the same port once one was chosen)."""
        if self._server is None:
            self._server = await asyncio.start_server(self._accept, self.host, self.port)
            self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Not a coroutine: the connection is known from the moment it is accepted, so that
        # close() closes it even when its handler is cancelled before it ever ran.
        self._accepted.add(writer)
        handler = asyncio.get_running_loop().create_task(self._handle(reader, writer))
        self._handlers.add(handler)
        handler.add_done_callback(self._handlers.discard)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._forward(reader, writer)
        finally:
            writer.close()  # also when cancelled before the upstream connection was made
            self._accepted.discard(writer)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            return
        self._writers.update((writer, up_writer))
        pipes = [
            asyncio.create_task(self._pipe(reader, up_writer, self.sent)),
            asyncio.create_task(self._pipe(up_reader, writer)),
        ]
        self._pipes.update(pipes)
        try:
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pipes:
                task.cancel()
            for each in (writer, up_writer):
                each.close()
                self._writers.discard(each)
            self._pipes.difference_update(pipes)

    @staticmethod
    async def _pipe(
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        record: bytearray | None = None,
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(1 << 16):
                if record is not None:
                    record += data
                writer.write(data)
                await writer.drain()

    def cut(self) -> None:
        """Close every proxied connection now (both sides see the connection drop)."""
        for writer in list(self._writers):
            writer.transport.abort()

    async def block(self) -> None:
        """Cut every connection and refuse new ones until ``unblock()``."""
        if self._server is not None:
            self._server.close()
            self._server = None
        self.cut()

    async def unblock(self) -> None:
        """Accept connections again, on the same port."""
        await self.start()

    async def close(self) -> None:
        """Stop for good (idempotent)."""
        await self.block()
        for task in [*self._pipes, *self._handlers]:
            task.cancel()
        await asyncio.gather(*self._pipes, *self._handlers, return_exceptions=True)
        for writer in list(self._accepted):  # handlers cancelled before they ran
            writer.close()
        self._accepted.clear()


@contextlib.asynccontextmanager
async def blocked(proxies: Iterable[TcpProxy]) -> AsyncIterator[None]:
    """An outage: every proxy cuts its connections and refuses new ones inside the block."""
    held = list(proxies)
    for proxy in held:
        await proxy.block()
    try:
        yield
    finally:
        for proxy in held:
            await proxy.unblock()
