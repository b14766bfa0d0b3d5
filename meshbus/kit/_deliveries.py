"""The skeleton of a subscription: messages handed out and not yet settled (``InFlight``), and
messages waiting to be handed out (``Inbox``)."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any, Self

from meshbus.message import Message

__all__ = ["InFlight", "Inbox"]


def _wake(future: asyncio.Future[None] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)


class InFlight:
    """The messages a subscription has handed out and that are not settled yet, keyed by
    their ``token`` (the channel's handle on a delivery: a delivery tag, an offset, a claimed
    file's name), and what waits on them: a prefetch gate and the drain of ``close``.

    A subscription records a message as it hands it out (``_track``) and forgets it when it
    is settled or given back (``_release``, which says whether it was still in flight: a
    message given back at close is no longer the subscriber's to settle). ``close`` ends the
    deliveries (``_stop``), waits a while for handed-out messages to be settled (``_drain``)
    and gives back the rest (``_unsettled``)."""

    def __init__(self, prefetch: int = 0) -> None:
        self.prefetch = prefetch
        """Messages that may be in flight at once (0: no limit here)."""
        self.in_flight: dict[Any, Message] = {}
        """Handed-out, unsettled messages by token."""
        self.closing = False
        """True once ``_stop`` was called: nothing more is handed out."""
        self._settle_waiter: asyncio.Future[None] | None = None

    def _track(self, message: Message) -> Message:
        """Record ``message`` as handed out (unless it has no token: nothing to settle) and
        return it; usable as an ``Inbox``'s ``_take``."""
        token = message.token
        if token is not None:
            self.in_flight[token] = message
        return message

    def _release(self, message: Message) -> bool:
        """Forget ``message`` (settled, or given back); False when it was not in flight."""
        if self.in_flight.pop(message.token, None) is None:
            return False
        settling = self._settle_waiter
        if settling is not None and not settling.done():
            settling.set_result(None)
        return True

    def _changed(self) -> None:
        """Wake whatever waits in ``wait_settled``, as a release does: for a subscription
        whose room to deliver grew some other way."""
        _wake(self._settle_waiter)

    def prefetch_full(self) -> bool:
        """Whether ``prefetch`` messages are in flight (never, with no ``prefetch``)."""
        return 0 < self.prefetch <= len(self.in_flight)

    async def wait_settled(self, timeout: float | None = None) -> None:
        """Wait until a message is released or the deliveries stop, or ``timeout`` seconds
        pass (no error then); the caller looks again at what it waits for."""
        settling = self._settle_waiter
        if settling is None or settling.done():
            settling = self._settle_waiter = asyncio.get_running_loop().create_future()
        # asyncio.wait: a waiter that times out or is cancelled leaves the future to the others
        await asyncio.wait((settling,), timeout=timeout)

    async def _drain(
        self, timeout: float, pending: Callable[[Message], bool] | None = None
    ) -> None:
        """Wait up to ``timeout`` seconds until no handed-out message is in flight (none for
        which ``pending`` is true, where given)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.in_flight if pending is None else any(map(pending, self.in_flight.values())):
            left = deadline - loop.time()
            if left <= 0:
                return
            await self.wait_settled(left)

    def _unsettled(self) -> list[Message]:
        """Forget every message still in flight and return them, to give back."""
        messages = list(self.in_flight.values())
        self.in_flight.clear()
        return messages

    def _stop(self) -> list[Message]:
        """End the deliveries (``closing``) and wake whatever waits; return the messages that
        were waiting to be handed out (none here: see ``Inbox``)."""
        self.closing = True
        _wake(self._settle_waiter)
        return []


class Inbox(InFlight):
    """The queue between a client library's callbacks and a subscription's ``__anext__``:
    callbacks ``push`` messages (or append to ``queue`` and wake ``waiter`` themselves, on a
    path that counts every call), ``__anext__`` hands them out in order and ends once
    ``_stop`` was called.

    ``_take`` is called with each message as it leaves the queue: return it, or ``None`` to
    skip it. It hands messages out untracked; a subscription whose messages must be settled
    sets ``_take = InFlight._track`` or calls ``_track`` from its own.

    With a ``capacity``, the queue may be bounded by whoever fills it: past ``capacity``
    messages it stops (a client callback declines, a fetch loop waits in ``wait_for_room``)
    until the subscriber has taken the queue down to half."""

    def __init__(self, prefetch: int = 0, capacity: int = 0) -> None:
        super().__init__(prefetch)
        self.queue: deque[Message] = deque()
        """Messages waiting to be handed out."""
        self.waiter: asyncio.Future[None] | None = None
        """What ``__anext__`` waits on while the queue is empty."""
        self.capacity = capacity
        """Messages the queue should hold at most (0: no bound)."""
        self._space_waiter: asyncio.Future[None] | None = None

    def __aiter__(self) -> Self:
        return self

    def push(self, message: Message) -> None:
        """Queue a received message for the subscriber (from any callback on the loop)."""
        self.queue.append(message)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _take(self, message: Message) -> Message | None:
        """Called as ``message`` leaves the queue; ``None`` skips it."""
        return message

    def buffer_full(self) -> bool:
        """Whether the queue holds ``capacity`` messages or more (never, with no capacity)."""
        return 0 < self.capacity <= len(self.queue)

    async def wait_for_room(self) -> None:
        """Wait until the subscriber has taken the queue down to half its ``capacity``, or
        the deliveries stop."""
        if self.closing or len(self.queue) <= self.capacity >> 1:
            return
        room = self._space_waiter
        if room is None or room.done():
            room = self._space_waiter = asyncio.get_running_loop().create_future()
        await asyncio.wait((room,))

    def _stop(self) -> list[Message]:
        """End the iteration (``__anext__`` raises ``StopAsyncIteration`` from now on), wake
        whatever waits, and take the queued messages out of the queue: they were never handed
        out, and are returned to be given back or dropped."""
        super()._stop()
        _wake(self.waiter)
        _wake(self._space_waiter)
        queued = list(self.queue)
        self.queue.clear()
        return queued

    async def __anext__(self) -> Message:
        queue = self.queue
        while True:
            if self.closing:
                raise StopAsyncIteration
            if queue:
                message = self._take(queue.popleft())
                room = self._space_waiter
                if room is not None and len(queue) <= self.capacity >> 1:
                    self._space_waiter = None
                    _wake(room)
                if message is not None:
                    return message
                continue
            waiter = self.waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self.waiter = None
