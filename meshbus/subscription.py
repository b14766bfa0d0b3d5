"""Subscriptions as the user sees them: an async context manager and async iterator."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from meshbus._link import Link
from meshbus._resource import AsyncResource
from meshbus.errors import Closed
from meshbus.message import Message, too_many_deliveries
from meshbus.transport import PushSubscription, TransportSubscription

if TYPE_CHECKING:
    from meshbus.bus import Bus

__all__ = ["Subscription"]


class Subscription(AsyncResource):
    """Messages on one subject pattern, for one group or as a broadcast subscriber.

    Made by ``Bus.subscribe``. Active once entered (``async with``) or awaited; iterating yields
    messages until the subscription or its bus closes. Leaving ``async with`` (or ``close()``)
    drains: no new deliveries, delivered messages get until the timeout to be settled, and
    unsettled group messages go back to the group.
    """

    def __init__(
        self,
        bus: Bus,
        pattern: str,
        group: str | None,
        prefetch: int,
        *,
        link: Link,
        max_deliver: int | None = None,
    ) -> None:
        self.bus = bus
        self._link = link
        self.max_deliver = max_deliver
        self.pattern = pattern
        self.group = group
        self.prefetch = prefetch
        self._parts: list[TransportSubscription] = []
        self._live: list[TransportSubscription] = []  # parts still iterating (several channels)
        self._reads: dict[int, asyncio.Task[Message]] = {}  # one pending read per live part
        self._single: TransportSubscription | None = None  # the only part, if one
        self._state = 0  # 0 new, 1 active, 2 closed

    async def start(self) -> Subscription:
        """Make the subscription active on every channel its pattern reaches; return ``self``."""
        if self._state == 1:
            return self
        if self._state == 2:
            raise Closed("this subscription is closed")
        targets = self._link.targets(self.pattern)
        try:
            for transport in targets:
                self._parts.append(
                    await transport.subscribe(self.pattern, self.group, self.prefetch)
                )
        except BaseException:
            for part in self._parts:
                await part.close(0)
            self._state = 2
            raise
        self._live = list(self._parts)
        self._single = self._parts[0] if len(self._parts) == 1 else None
        self._state = 1
        self._link.opened(self)
        return self

    def pushable(self) -> PushSubscription | None:
        """The channel's own subscription when it is the only one and can push messages
        (``Bus.serve`` then has it push to its handlers), else None."""
        single = self._single
        return single if isinstance(single, PushSubscription) else None

    def __aiter__(self) -> Subscription:
        return self

    def __anext__(self) -> Awaitable[Message]:
        # A plain method returning the channel's own awaitable: one coroutine less per message.
        if self._state != 1:
            return self._not_iterating()
        if self.max_deliver is not None:
            return self._next_within_limit(self.max_deliver)
        if self._single is not None:
            return self._single.__anext__()
        return self._next_of_several()

    async def _next_within_limit(self, limit: int) -> Message:
        """The next message delivered at most ``limit`` times; one over it is dead-lettered."""
        while True:
            if self._single is not None:
                message = await self._single.__anext__()
            else:
                message = await self._next_of_several()
            if message.attempt <= limit:
                return message
            await too_many_deliveries(message, limit)

    async def _not_iterating(self) -> Message:
        if self._state == 0:
            raise Closed("enter the subscription first: 'async with bus.subscribe(...)'")
        raise StopAsyncIteration

    async def _next_of_several(self) -> Message:
        """The next message from whichever channel has one. Nothing is read ahead: reads are
        armed only while the user waits, and one that took nothing is cancelled."""
        while True:
            finished = [key for key, task in self._reads.items() if task.done()]
            if finished:
                key = finished[0]
                task = self._reads.pop(key)
                error = task.exception()
                if isinstance(error, StopAsyncIteration):
                    self._live = [part for part in self._live if id(part) != key]
                    continue
                # Nothing stays armed while the user works on this message: unfinished reads
                # are cancelled (they took nothing); finished ones are kept for the next call.
                for other_key, other in list(self._reads.items()):
                    if not other.done():
                        other.cancel()
                        del self._reads[other_key]
                if error is not None:
                    raise error
                return task.result()  # also while closing: it was taken before the close
            if self._state != 1:
                raise StopAsyncIteration
            for part in self._live:
                if id(part) not in self._reads:
                    self._reads[id(part)] = asyncio.ensure_future(part.__anext__())
            if not self._reads:
                raise StopAsyncIteration
            await asyncio.wait(self._reads.values(), return_when=asyncio.FIRST_COMPLETED)

    async def close(self, timeout: float | None = None) -> None:
        """Drain and end the subscription (idempotent)."""
        if self._state == 2:
            return
        self._state = 2
        self._link.closed(self)
        budget = self._link.drain_timeout if timeout is None else timeout
        unfinished = [key for key, task in self._reads.items() if not task.done()]
        for key in unfinished:
            self._reads.pop(key).cancel()  # armed, took nothing
        await asyncio.gather(*(part.close(budget) for part in self._parts))
        # A read that finished just as the close began is still the user's to take during the
        # drain above; one nobody took by now goes back to its group.
        leftover, self._reads = list(self._reads.values()), {}
        for read in leftover:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                message = read.result()
                if not message.settled:
                    await message.nack()

    def __repr__(self) -> str:
        group = f", group={self.group!r}" if self.group else ""
        return f"Subscription({self.pattern!r}{group})"
