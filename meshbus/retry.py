"""Retry policy for handlers: a failing message is delivered again after a growing delay, then
dead-lettered when its attempts run out. The same on every channel, since it is made of the
contract's own ``nack(delay=)`` and ``reject(reason)``."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from meshbus.errors import ConfigurationError

__all__ = ["Retry"]


@dataclass(frozen=True, slots=True)
class Retry:
    """How a handler that raises is retried.

    Delivery ``n`` (``msg.attempt``, 1 the first time) that fails is delivered again after
    ``backoff * factor ** (n - 1)`` seconds, at most ``max_backoff``, spread by up to
    ``jitter`` of itself either way; once ``attempts`` deliveries have failed the message is
    rejected to its group's dead-letter subject with the last error as the reason. The channel
    keeps the count, so a retry survives the replica that failed it on durable channels.

    ``Retry(attempts=1)`` dead-letters at the first failure; ``backoff=0`` retries at once.
    """

    attempts: int = 5
    """Deliveries a message gets before it is dead-lettered (at least 1)."""
    backoff: float = 0.5
    """Seconds before the second delivery."""
    factor: float = 2.0
    """What each later wait is multiplied by (at least 1)."""
    max_backoff: float = 60.0
    """The longest wait, in seconds."""
    jitter: float = 0.1
    """The share of a wait by which it is spread at random, either way (0 to 1)."""

    def __post_init__(self) -> None:
        checks = [
            (isinstance(self.attempts, int) and self.attempts >= 1, "attempts must be >= 1"),
            (_number(self.backoff) and self.backoff >= 0, "backoff must be >= 0"),
            (_number(self.factor) and self.factor >= 1, "factor must be >= 1"),
            (_number(self.max_backoff) and self.max_backoff >= 0, "max_backoff must be >= 0"),
            (_number(self.jitter) and 0 <= self.jitter <= 1, "jitter must be within 0..1"),
        ]
        wrong = [why for ok, why in checks if not ok]
        if wrong:
            raise ConfigurationError(f"invalid Retry policy {self!r}: {'; '.join(wrong)}")

    def delay(self, attempt: int) -> float:
        """Seconds to wait before delivering again a message whose delivery ``attempt``
        failed."""
        base = min(self.max_backoff, self.backoff * self.factor ** max(0, attempt - 1))
        if self.jitter and base:
            base *= 1 + random.uniform(-self.jitter, self.jitter)
        return max(0.0, base)

    def gives_up(self, attempt: int) -> bool:
        """True when a failure of delivery ``attempt`` is the last one allowed."""
        return attempt >= self.attempts


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
