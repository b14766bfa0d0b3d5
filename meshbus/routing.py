"""Which channel a subject goes to, given a default channel and a route table."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Generic, TypeVar

from meshbus.subjects import matches, overlaps, specificity

__all__ = ["Router"]

T = TypeVar("T")


class Router(Generic[T]):
    """Routes subjects to targets: the most specific matching route pattern wins (more literal
    tokens, then no ``>``, then more tokens); subjects no route matches go to the default."""

    def __init__(self, default: T, routes: Mapping[str, T]) -> None:
        self.default = default
        self._routes = sorted(routes.items(), key=lambda item: specificity(item[0]), reverse=True)

    def for_subject(self, subject: str) -> T:
        """The target a concrete subject is published to."""
        for pattern, target in self._routes:
            if matches(pattern, subject):
                return target
        return self.default

    def for_pattern(self, pattern: str) -> list[T]:
        """Every distinct target a subscription on ``pattern`` must listen on: the default and
        each route whose pattern some matching subject could be routed by."""
        targets: list[T] = [self.default]
        for route, target in self._routes:
            if overlaps(route, pattern) and all(target is not t for t in targets):
                targets.append(target)
        return targets
