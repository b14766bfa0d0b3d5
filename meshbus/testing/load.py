"""Testing what a channel does through an outage: a numbered publish/consume load in which
every publish that returned must be consumed (contract points 5 and 11), and publishes that
must fail in their own time while the broker is down."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Self

from meshbus.bus import Bus
from meshbus.errors import MeshbusTimeout, TransportError
from meshbus.subscription import Subscription

__all__ = ["ConfirmedLoad", "publishes_fail_in_time"]


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


async def publishes_fail_in_time(
    bus: Bus, stop_broker: Callable[[], object], *, warm: Sequence[str] = ("x",)
) -> None:
    """Stop the broker (``stop_broker`` runs in a thread), then check that a publish to a
    declared group's subject and to a subject nobody declared, and a request, each raise
    ``MeshbusTimeout`` or ``TransportError`` after their own 0.5 s timeout, within 3 s.

    Before the outage the group ``g<tag>`` is declared on ``o<tag>.x`` and one message is
    published to each of ``o<tag>.<w>`` for ``w`` in ``warm``; the bus is closed at the end.
    """
    tag = uuid.uuid4().hex[:10]
    await bus.declare_group(f"o{tag}.x", f"g{tag}")
    for token in warm:
        await bus.publish(f"o{tag}.{token}", b"before")
    await asyncio.to_thread(stop_broker)
    await asyncio.sleep(0.5)
    loop = asyncio.get_running_loop()
    for subject in (f"o{tag}.x", f"o{tag}.y"):
        started = loop.time()
        try:
            await bus.publish(subject, b"during", timeout=0.5)
        except (MeshbusTimeout, TransportError):
            pass
        else:
            raise AssertionError(f"a publish to {subject} with the broker down returned")
        took = loop.time() - started
        assert took < 3, f"a publish with a 0.5 s timeout took {took:.1f} s to fail"
    try:
        await bus.request(f"o{tag}.x", b"?", timeout=0.5)
    except (MeshbusTimeout, TransportError):
        pass
    else:
        raise AssertionError("a request with the broker down was answered")
    await bus.close(timeout=0.5)
