"""What a subscription or a service needs from the bus that made it (package-internal).

``Bus`` hands a :class:`Link` to each ``Subscription`` and ``Service`` it makes, so that they
reach the bus only through these three calls, not through its private fields.
"""

from __future__ import annotations

from typing import Protocol

from meshbus.transport import TransportSubscription

__all__ = ["Closeable", "Link", "Subscribable"]


class Subscribable(Protocol):
    """A channel, or a listen address: what a subscription is made on."""

    async def subscribe(
        self, pattern: str, group: str | None, prefetch: int
    ) -> TransportSubscription:
        """Start a subscription (``Transport.subscribe``)."""


class Closeable(Protocol):
    """A subscription or service the bus closes with itself."""

    async def close(self, timeout: float | None = None) -> None:
        """Drain and close."""


class Link(Protocol):
    """A bus, as its subscriptions and services see it."""

    @property
    def drain_timeout(self) -> float:
        """Seconds a close waits for delivered messages to be settled, by default."""

    def targets(self, pattern: str) -> list[Subscribable]:
        """Where subscriptions to ``pattern`` are made: the channels it is routed to that
        serve their own subscriptions, and the listen address (``ConfigurationError`` if
        there is none of either)."""

    def opened(self, resource: Closeable) -> None:
        """``resource`` is active: close it when the bus closes."""

    def closed(self, resource: Closeable) -> None:
        """``resource`` closed (or is closed by another): the bus leaves it alone."""
