"""A cache of values that are cheap to work out again, bounded by forgetting them all."""

from __future__ import annotations

from typing import TypeVar

__all__ = ["DEFAULT_LIMIT", "BoundedCache"]

K = TypeVar("K")
V = TypeVar("V")

DEFAULT_LIMIT = 4096
"""Entries a ``BoundedCache`` holds unless told otherwise."""


class BoundedCache(dict[K, V]):
    """A ``dict`` that ``put`` empties whenever it is full, then fills again.

    For per-message lookups keyed by something a caller chooses (subject -> topic, subject ->
    stream): reading is a plain ``dict`` lookup (``cache.get(key)``, ``cache[key]``), with no
    Python call in between, and a process that sees endless new keys keeps at most ``limit``
    of them. Forgetting everything at once costs one miss per live key afterwards, which is
    why it only suits values that are cheap to work out again. Write through ``put``; any
    other ``dict`` method works as on a ``dict`` (``clear()`` to drop what may be stale)."""

    __slots__ = ("limit",)

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        if limit < 1:
            raise ValueError("a BoundedCache holds at least one entry")
        super().__init__()
        self.limit = limit
        """The most entries it holds."""

    def put(self, key: K, value: V) -> V:
        """Keep ``value`` under ``key`` (emptying the cache first if it is full); return
        ``value``."""
        if len(self) >= self.limit and key not in self:
            self.clear()
        self[key] = value
        return value
