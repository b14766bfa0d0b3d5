"""A numbered publish/consume load for testing what a channel keeps through an outage: every
publish that returned must be consumed (contract points 5 and 11)."""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Self

from meshbus.bus import Bus
from meshbus.errors import MeshbusTimeout, TransportError
from meshbus.subscription import Subscription

__all__ = ["ConfirmedLoad"]


class ConfirmedLoad:
    """Publishes the numbers ``0..count-1`` (a single publish and a batch of two, in turn)
    through ``publisher`` while the test does something to the channel, and consumes through
    ``subscription``, acking each.

    A publish that raises (``MeshbusTimeout`` or ``TransportError``) is not confirmed and may
    or may not arrive; one that returned is in :attr:`confirmed` and must reach
    :attr:`received`. :attr:`slowest` is the longest a publish call took (a publish that waited
    out an outage shows up there).
    """

    def __init__(
        self,
        publisher: Bus,
        subscription: Subscription,
        subject: str,
        *,
        count: int = 600,
        publish_timeout: float = 30.0,
        pause: float = 0.005,
    ) -> None:
        self.publisher = publisher
        self.subscription = subscription
        self.subject = subject
        self.count = count
        self.publish_timeout = publish_timeout
        self.pause = pause
        self.confirmed: set[int] = set()
        self.received: set[int] = set()
        self.slowest = 0.0
        self._published = False
        self._all_in = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Self:
        self._tasks = [
            asyncio.create_task(self._consume()),
            asyncio.create_task(self._produce()),
        ]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _check(self) -> None:
        if self._published and self.confirmed <= self.received:
            self._all_in.set()

    async def _consume(self) -> None:
        async for msg in self.subscription:
            self.received.add(msg.json())
            await msg.ack()
            self._check()

    async def _produce(self) -> None:
        loop = asyncio.get_running_loop()
        for n in range(0, self.count, 3):
            started = loop.time()
            try:
                await self.publisher.publish(self.subject, n, timeout=self.publish_timeout)
                self.confirmed.add(n)
                batch = [(self.subject, n + 1), (self.subject, n + 2)]
                ids = await self.publisher.publish_many(batch, timeout=self.publish_timeout)
                if len(ids) != 2:
                    raise AssertionError(f"publish_many of 2 returned {len(ids)} ids")
                self.confirmed.update((n + 1, n + 2))
            except (MeshbusTimeout, TransportError):
                pass  # raised: not confirmed, may or may not arrive
            self.slowest = max(self.slowest, loop.time() - started)
            await asyncio.sleep(self.pause)

    async def published(self) -> None:
        """Wait until every publish has returned or raised."""
        await self._tasks[1]
        self._published = True
        self._check()

    async def consumed(self, within: float) -> None:
        """After :meth:`published`: wait until every confirmed publish was consumed."""
        async with asyncio.timeout(within):
            await self._all_in.wait()
