"""What a channel gives the conformance suite, and the per-test session the suite works in."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

import pytest

import meshbus
from meshbus.bus import Bus
from meshbus.message import Message
from meshbus.subscription import Subscription
from meshbus.testing.proxy import TcpProxy
from meshbus.transport import Capabilities

__all__ = ["ChannelHarness", "Session", "UrlHarness", "contract"]

T = TypeVar("T")

DEFAULT_TEST_TIMEOUT = 60.0
"""Each conformance test is bounded by this many seconds unless it says otherwise."""


class ChannelHarness:
    """A channel under test. Subclass it (or use :class:`UrlHarness`) and return it from a
    ``harness`` fixture on a subclass of ``ConformanceSuite``.

    Every bus made by one harness must reach every other bus it made: what one publishes, the
    others' subscriptions see.
    """

    async def connect(self) -> Bus:
        """Return a new, started bus on the channel."""
        raise NotImplementedError

    def outage(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Inside this context the channel's connections are down (a broker stopped, a proxy
        cut); leaving it brings them back. Needed by channels that declare ``reconnects``."""
        raise NotImplementedError(f"{type(self).__name__} cannot simulate an outage")

    async def aclose(self) -> None:
        """Release what the harness holds (called once the test ends)."""
        return None


class UrlHarness(ChannelHarness):
    """A harness whose buses all connect to one URL with the same options."""

    def __init__(self, url: str, **connect_kwargs: Any) -> None:
        self.url = url
        self.connect_kwargs = connect_kwargs

    async def connect(self) -> Bus:
        return await meshbus.connect(self.url, **self.connect_kwargs)


class ProxiedHarness(UrlHarness):
    """Buses on one URL, optionally through a loopback ``TcpProxy`` (give it the proxy, and a
    URL that points at the proxy's port): an outage blocks the proxy (every connection cut,
    new ones refused) and unblocks it on leaving the block, while the broker behind it keeps
    running and keeps its data. Without a proxy there is no ``outage``."""

    def __init__(self, url: str, proxy: TcpProxy | None = None, **connect_kwargs: Any) -> None:
        super().__init__(url, **connect_kwargs)
        self.proxy = proxy

    async def connect(self) -> Bus:
        if self.proxy is not None:
            await self.proxy.start()
        return await super().connect()

    @contextlib.asynccontextmanager
    async def outage(self) -> AsyncIterator[None]:
        if self.proxy is None:
            raise NotImplementedError("this harness has no proxy to cut")
        await self.proxy.block()
        try:
            yield
        finally:
            await self.proxy.unblock()

    async def aclose(self) -> None:
        if self.proxy is not None:
            # Cut first and let the pipes end by themselves, so every stream is closed.
            await self.proxy.block()
            await asyncio.sleep(0.2)
            await self.proxy.close()


class Session:
    """One conformance test's world: buses it made, names unique to the test, and helpers."""

    def __init__(self, harness: ChannelHarness) -> None:
        self.harness = harness
        self.prefix = "t" + uuid.uuid4().hex[:12]
        self._buses: list[Bus] = []
        self._caps: Capabilities | None = None

    @property
    def caps(self) -> Capabilities:
        """The channel's declared capabilities (known after the first bus is made)."""
        assert self._caps is not None, "make a bus first"
        return self._caps

    async def bus(self) -> Bus:
        """A new started bus; closed at the end of the test."""
        bus = await self.harness.connect()
        self._buses.append(bus)
        if self._caps is None:
            self._caps = bus.capabilities(self.subject("probe"))
        return bus

    def subject(self, name: str) -> str:
        """A subject unique to this test: ``<prefix>.<name>``."""
        return f"{self.prefix}.{name}"

    def group(self, name: str) -> str:
        """A group name unique to this test."""
        return f"{self.prefix}-{name}"

    async def aclose(self) -> None:
        for bus in reversed(self._buses):
            await bus.close(timeout=2.0)

    @staticmethod
    async def take(
        sub: Subscription, count: int, *, ack: bool = True, within: float = 20.0
    ) -> list[Message]:
        """Receive exactly ``count`` messages (acking each unless told not to)."""
        got: list[Message] = []
        async with asyncio.timeout(within):
            while len(got) < count:
                message = await sub.__anext__()
                if ack:
                    await message.ack()
                got.append(message)
        return got

    @staticmethod
    async def nothing(sub: Subscription, within: float = 0.5) -> None:
        """Assert that no message arrives on ``sub`` within ``within`` seconds."""
        try:
            async with asyncio.timeout(within):
                message = await sub.__anext__()
        except (TimeoutError, StopAsyncIteration):
            return
        raise AssertionError(f"expected no message, got {message!r} ({message.data[:80]!r})")


def contract(
    point: int,
    *,
    needs: tuple[str, ...] = (),
    timeout: float = DEFAULT_TEST_TIMEOUT,
) -> Callable[[Callable[[Any, Session], Awaitable[None]]], Callable[..., Awaitable[None]]]:
    """Mark a conformance test: the contract ``point`` it checks, the capabilities it ``needs``
    (skipped where a channel does not declare them) and its time bound."""

    def wrap(fn: Callable[[Any, Session], Awaitable[None]]) -> Callable[..., Awaitable[None]]:
        async def test(self: Any, harness: ChannelHarness) -> None:
            session = Session(harness)
            try:
                async with asyncio.timeout(timeout):
                    await session.bus()
                    lacking = [name for name in needs if not getattr(session.caps, name)]
                    if lacking:
                        pytest.skip(f"the channel does not declare {', '.join(lacking)}")
                    await fn(self, session)
            finally:
                try:
                    await session.aclose()
                finally:
                    await harness.aclose()

        test.__name__ = fn.__name__
        test.__qualname__ = fn.__qualname__
        test.__doc__ = f"[contract {point}] {fn.__doc__ or ''}".strip()
        test.__module__ = fn.__module__
        marked: Callable[..., Awaitable[None]] = pytest.mark.asyncio(pytest.mark.conformance(test))
        return marked

    return wrap


async def gather_all(*aws: Awaitable[T]) -> list[T]:
    """``asyncio.gather`` with a list result, for brevity in tests."""
    return list(await asyncio.gather(*aws))


def header_subset(headers: Mapping[str, str], expected: Mapping[str, str]) -> bool:
    """True if every expected header is present with its value."""
    return all(headers.get(k) == v for k, v in expected.items())


@contextlib.asynccontextmanager
async def running(coro: Awaitable[None]) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``coro`` as a task for the block's duration; cancel it after."""
    task: asyncio.Task[None] = asyncio.ensure_future(coro)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
