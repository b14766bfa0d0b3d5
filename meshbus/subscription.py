"""Subscriptions as the user sees them: an async context manager and async iterator."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from meshbus._resource import AsyncResource
from meshbus.errors import Closed
from meshbus.message import Message
from meshbus.transport import TransportSubscription

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

    def __init__(self, bus: Bus, pattern: str, group: str | None, prefetch: int) -> None:
        self.bus = bus
        self.pattern = pattern
        self.group = group
        self.prefetch = prefetch
        self._parts: list[TransportSubscription] = []
        self._merged: asyncio.Queue[Message | None] | None = None
        self._pumps: list[asyncio.Task[None]] = []
        self._state = 0  # 0 new, 1 active, 2 closed

    async def start(self) -> Subscription:
        """Make the subscription active on every channel its pattern reaches; return ``self``."""
        if self._state == 1:
            return self
        if self._state == 2:
            raise Closed("this subscription is closed")
        targets = self.bus._targets(self.pattern)
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
        if len(self._parts) > 1:
            self._merged = asyncio.Queue(maxsize=1)
            self._pumps = [asyncio.create_task(self._pump(part)) for part in self._parts]
        self._state = 1
        self.bus._track(self, True)
        return self

    async def _pump(self, part: TransportSubscription) -> None:
        assert self._merged is not None
        try:
            async for message in part:
                try:
                    await self._merged.put(message)
                except asyncio.CancelledError:
                    await message.nack()  # never reached the user: give it straight back
                    raise
        finally:
            with contextlib.suppress(asyncio.QueueFull):
                self._merged.put_nowait(None)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Message:
        if self._state != 1:
            if self._state == 0:
                raise Closed("enter the subscription first: 'async with bus.subscribe(...)'")
            raise StopAsyncIteration
        if self._merged is None:
            return await self._parts[0].__anext__()
        while True:
            item = await self._merged.get()
            if item is not None:
                return item
            if all(task.done() for task in self._pumps):
                raise StopAsyncIteration

    async def close(self, timeout: float | None = None) -> None:
        """Drain and end the subscription (idempotent)."""
        if self._state == 2:
            return
        self._state = 2
        self.bus._track(self, False)
        budget = self.bus.drain_timeout if timeout is None else timeout
        for task in self._pumps:
            task.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        if self._merged is not None:
            # Messages merged but never handed to the user go back at once, so that the
            # drain below waits only for the ones the user holds.
            while not self._merged.empty():
                held = self._merged.get_nowait()
                if held is not None and not held.settled:
                    await held.nack()
            with contextlib.suppress(asyncio.QueueFull):
                self._merged.put_nowait(None)
        await asyncio.gather(*(part.close(budget) for part in self._parts))

    def __repr__(self) -> str:
        group = f", group={self.group!r}" if self.group else ""
        return f"Subscription({self.pattern!r}{group})"
