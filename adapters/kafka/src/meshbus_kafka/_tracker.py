"""Which offset of a partition may be committed: the first one not yet settled.

Records are fetched in offset order; each is settled (acked, nacked through the retry topic,
dead-lettered, or skipped) in any order. The committable offset is the lowest fetched offset
not yet settled, or one past the last fetched when all are: an ack out of order never moves
the commit past an unsettled message.
"""

from __future__ import annotations

from collections import deque
from typing import Any

__all__ = ["Partition", "Token"]


class Partition:
    """Fetched and settled offsets of one assigned partition."""

    __slots__ = ("committed", "done", "high", "live", "pending", "tp")

    def __init__(self, tp: Any) -> None:
        self.tp = tp
        self.pending: deque[int] = deque()
        self.done: set[int] = set()
        self.high: int | None = None
        self.committed: int | None = None
        self.live = True

    def fetched(self, offset: int) -> None:
        """A record at ``offset`` was fetched (offsets come in increasing order)."""
        self.pending.append(offset)
        self.high = offset + 1

    def settle(self, offset: int) -> None:
        """The record at ``offset`` is settled."""
        pending = self.pending
        if pending and pending[0] == offset:
            pending.popleft()
            done = self.done
            while pending and pending[0] in done:
                done.discard(pending.popleft())
        else:
            self.done.add(offset)

    def position(self) -> int | None:
        """The offset to commit (``None`` before anything was fetched)."""
        return self.pending[0] if self.pending else self.high


class Token:
    """A group delivery's handle: its partition state and offset."""

    __slots__ = ("offset", "part", "timer")

    def __init__(self, part: Partition, offset: int) -> None:
        self.part = part
        self.offset = offset
        self.timer: Any = None
