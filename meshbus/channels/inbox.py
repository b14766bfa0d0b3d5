"""The buffer a push-style channel needs between its client library's callbacks and
``TransportSubscription.__anext__``: callbacks ``push`` messages, ``__anext__`` waits for them,
``_stop`` ends the iteration. Channel adapters (NATS, Kafka) subclass it."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Self

from meshbus.message import Message

__all__ = ["Inbox"]


class Inbox:
    """Messages delivered to one subscription, waiting for ``__anext__``."""

    def __init__(self) -> None:
        self.queue: deque[Message] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.closing = False

    def __aiter__(self) -> Self:
        return self

    def push(self, message: Message) -> None:
        """Hand a received message to the subscriber (from any callback on the loop)."""
        self.queue.append(message)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _take(self, message: Message) -> Message | None:
        """Called as a message leaves the queue; ``None`` skips it. Subclasses track
        in-flight messages here."""
        return message

    def _stop(self) -> None:
        """End the iteration: ``__anext__`` raises ``StopAsyncIteration`` from now on."""
        self.closing = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def __anext__(self) -> Message:
        while True:
            if self.closing:
                raise StopAsyncIteration
            if self.queue:
                message = self._take(self.queue.popleft())
                if message is not None:
                    return message
                continue
            waiter = self.waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self.waiter = None
