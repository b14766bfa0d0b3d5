"""Subjects and subscription patterns.

A subject is dot-separated tokens of ``[A-Za-z0-9_-]``, at most 255 characters:
``orders.created``, ``eu-west.stock_level.A1``. A pattern may also use ``*`` for exactly one
token and ``>`` for one or more trailing tokens (``>`` only as the last token):
``orders.*`` matches ``orders.created`` but not ``orders`` or ``orders.created.v2``;
``orders.>`` matches both of the last two.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Generic, TypeVar

from meshbus._cache import BoundedCache
from meshbus.errors import InvalidSubject

__all__ = [
    "MAX_SUBJECT_LENGTH",
    "SubjectIndex",
    "is_pattern",
    "matches",
    "overlaps",
    "specificity",
    "validate_group",
    "validate_pattern",
    "validate_subject",
]

MAX_SUBJECT_LENGTH = 255

_SUBJECT = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*")
_PATTERN = re.compile(r"(?:[A-Za-z0-9_-]+|\*)(?:\.(?:[A-Za-z0-9_-]+|\*))*(?:\.>)?|>")
_TOKEN = re.compile(r"[A-Za-z0-9_-]+")


def _explain(text: str, wildcards: bool) -> str:
    if text == "":
        return "it is empty"
    if len(text) > MAX_SUBJECT_LENGTH:
        return f"it is {len(text)} characters long, the limit is {MAX_SUBJECT_LENGTH}"
    for index, token in enumerate(text.split(".")):
        if token == "":
            return "it has an empty token (a leading, trailing or doubled '.')"
        if token in {"*", ">"}:
            if not wildcards:
                return f"wildcard {token!r} is only allowed in subscription patterns"
            if token == ">" and index != text.count("."):
                return "'>' is only allowed as the last token"
            continue
        if not _TOKEN.fullmatch(token):
            bad = next(ch for ch in token if not _TOKEN.fullmatch(ch))
            return f"token {token!r} has {bad!r}; tokens are letters, digits, '_' and '-'"
    return "it breaks the subject rules"  # pragma: no cover - every failure is named above


def _validate(value: object, grammar: re.Pattern[str], what: str, wildcards: bool) -> str:
    if type(value) is str and len(value) <= MAX_SUBJECT_LENGTH and grammar.fullmatch(value):
        return value
    if not isinstance(value, str):
        raise InvalidSubject(value, f"a {what} is a str, not {type(value).__name__}")
    raise InvalidSubject(value, _explain(value, wildcards))


def validate_subject(subject: object) -> str:
    """Return ``subject`` if it is a valid concrete subject (no wildcards), else raise."""
    return _validate(subject, _SUBJECT, "subject", wildcards=False)


def validate_pattern(pattern: object) -> str:
    """Return ``pattern`` if it is a valid subscription pattern, else raise ``InvalidSubject``."""
    return _validate(pattern, _PATTERN, "pattern", wildcards=True)


def validate_group(group: object) -> str:
    """Return ``group`` if it is a valid group name (one subject token), else raise."""
    if type(group) is str and len(group) <= MAX_SUBJECT_LENGTH and _TOKEN.fullmatch(group):
        return group
    raise InvalidSubject(
        group, "a group name is one token of letters, digits, '_' and '-' (no dots)"
    )


def is_pattern(pattern: str) -> bool:
    """True if ``pattern`` holds a wildcard token."""
    return "*" in pattern or ">" in pattern


def matches(pattern: str, subject: str) -> bool:
    """True if the concrete ``subject`` matches the (validated) ``pattern``."""
    if pattern == subject:
        return True
    p_tokens = pattern.split(".")
    s_tokens = subject.split(".")
    for index, token in enumerate(p_tokens):
        if token == ">":
            return len(s_tokens) > index
        if index >= len(s_tokens) or (token != "*" and token != s_tokens[index]):
            return False
    return len(p_tokens) == len(s_tokens)


def overlaps(first: str, second: str) -> bool:
    """True if some concrete subject matches both patterns."""
    a = first.split(".")
    b = second.split(".")
    for index in range(max(len(a), len(b))):
        x = a[index] if index < len(a) else None
        y = b[index] if index < len(b) else None
        if x == ">":
            return y is not None
        if y == ">":
            return x is not None
        if x is None or y is None:
            return False
        if x != y and x != "*" and y != "*":
            return False
    return True


def specificity(pattern: str) -> tuple[int, int, int]:
    """A sort key: larger is more specific (literal tokens, then fewer ``>``, then length)."""
    tokens = pattern.split(".")
    literal = sum(1 for token in tokens if token not in {"*", ">"})
    return (literal, 0 if tokens[-1] == ">" else 1, len(tokens))


V = TypeVar("V")


class SubjectIndex(Generic[V]):
    """Patterns mapped to values, answering "which values match this subject" fast.

    Lookups are cached per subject and the cache is dropped whenever the index changes, so a
    publisher that sends to the same subjects over and over pays one dict lookup each time.
    """

    __slots__ = ("_cache", "_exact", "_wild")

    def __init__(self) -> None:
        self._exact: dict[str, list[V]] = {}
        self._wild: dict[str, list[V]] = {}
        self._cache: BoundedCache[str, tuple[V, ...]] = BoundedCache()

    def add(self, pattern: str, value: V) -> None:
        """Index ``value`` under ``pattern``."""
        table = self._wild if is_pattern(pattern) else self._exact
        table.setdefault(pattern, []).append(value)
        self._cache.clear()

    def remove(self, pattern: str, value: V) -> None:
        """Remove one ``value`` indexed under ``pattern`` (no error if absent)."""
        table = self._wild if is_pattern(pattern) else self._exact
        values = table.get(pattern)
        if values is None:
            return
        try:
            values.remove(value)
        except ValueError:
            return
        if not values:
            del table[pattern]
        self._cache.clear()

    def lookup(self, subject: str) -> tuple[V, ...]:
        """Every value whose pattern matches ``subject``, in insertion order per pattern."""
        found = self._cache.get(subject)
        if found is not None:
            return found
        values: list[V] = list(self._exact.get(subject, ()))
        for pattern, entries in self._wild.items():
            if matches(pattern, subject):
                values.extend(entries)
        return self._cache.put(subject, tuple(values))

    def __iter__(self) -> Iterator[tuple[str, V]]:
        for table in (self._exact, self._wild):
            for pattern, values in table.items():
                for value in values:
                    yield pattern, value

    def __len__(self) -> int:
        return sum(len(v) for v in self._exact.values()) + sum(len(v) for v in self._wild.values())
