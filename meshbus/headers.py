"""Header names meshbus reserves for itself, and checks on user headers.

Headers are ``str -> str`` and round-trip on every channel. Names that start with ``mb-`` are
meshbus's own; a user header with that prefix is an ``InvalidHeader`` error.
"""

from __future__ import annotations

from collections.abc import Mapping

from meshbus.errors import InvalidHeader

__all__ = [
    "ATTEMPT",
    "CONTENT_TYPE",
    "CORRELATION_ID",
    "DEAD_GROUP",
    "DEAD_REASON",
    "DEAD_SUBJECT",
    "KEY",
    "MESSAGE_ID",
    "REPLY_TO",
    "RESERVED_PREFIX",
    "TRACEPARENT",
    "check_user_headers",
    "dead_letter_headers",
    "dead_letter_subject",
]

RESERVED_PREFIX = "mb-"
MESSAGE_ID = "mb-id"
ATTEMPT = "mb-attempt"
CORRELATION_ID = "mb-correlation-id"
REPLY_TO = "mb-reply-to"
CONTENT_TYPE = "mb-content-type"
TRACEPARENT = "mb-traceparent"
KEY = "mb-key"
DEAD_SUBJECT = "mb-dead-subject"
DEAD_REASON = "mb-dead-reason"
DEAD_GROUP = "mb-dead-group"

DEAD_LETTER_PREFIX = "dead-letter"


def dead_letter_subject(group: str) -> str:
    """The subject where ``reject()`` moves the messages of ``group``: ``dead-letter.<group>``."""
    return f"{DEAD_LETTER_PREFIX}.{group}"


def dead_letter_headers(
    headers: Mapping[str, str], subject: str, group: str, reason: str, attempt: int
) -> dict[str, str]:
    """A copy of a rejected message's ``headers`` with where it was published, the group that
    rejected it, why, and the attempt it was on: what ``dead-letter.<group>`` receives."""
    dead = dict(headers)
    dead[DEAD_SUBJECT] = subject
    dead[DEAD_REASON] = reason
    dead[DEAD_GROUP] = group
    dead[ATTEMPT] = str(attempt)
    return dead


def check_user_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """Return a fresh ``dict`` copy of user headers, or raise ``InvalidHeader``."""
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        raise InvalidHeader(
            f"headers must be a mapping of str to str, not {type(headers).__name__}"
        )
    checked: dict[str, str] = {}
    for name, value in headers.items():
        if type(name) is not str or not name:
            raise InvalidHeader(f"header names must be non-empty str, got {name!r}")
        if type(value) is not str:
            raise InvalidHeader(
                f"header {name!r} has a {type(value).__name__} value; header values are str"
            )
        if name[:3].lower() == RESERVED_PREFIX:
            raise InvalidHeader(
                f"header {name!r} uses the prefix {RESERVED_PREFIX!r}, reserved for meshbus"
            )
        if "\r" in name or "\n" in name or ":" in name or "\r" in value or "\n" in value:
            raise InvalidHeader(f"header {name!r} has a line break or ':' where none may be")
        checked[name] = value
    return checked
