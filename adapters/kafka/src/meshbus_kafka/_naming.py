"""How meshbus subjects, patterns and groups map onto Kafka topic and group names.

Kafka topic names allow ``[A-Za-z0-9._-]`` (at most 249 characters); meshbus subjects are
dot-separated tokens of ``[A-Za-z0-9_-]``, so the mapping is almost 1:1. Kafka treats ``.``
and ``_`` as the same in metric names and refuses a topic that collides with another after
that substitution (``a.b`` and ``a_b``), so topics of subjects never contain ``_``:

- ``-`` becomes ``--`` and ``_`` becomes ``-u``; letters, digits and dots stay.
  ``orders.created`` → ``orders.created``; ``user_events.new-sign`` → ``user-uevents.new--sign``.
  The reverse is exact, so the subject of a record is read from its topic.
- A subject whose topic would be longer than 249 characters maps to the first 230 characters
  of it, then ``-h`` and 16 hex digits of the subject's SHA-256; records carry the subject in the
  ``mb-subject`` header. ``-h`` is no escape, so such topics are told apart.
- meshbus's own topics start with ``_`` (which no subject topic contains):
  ``_mb_retry_<group id hash>`` and ``_mb_reply_<client id>``.
"""

from __future__ import annotations

import hashlib
import re

__all__ = [
    "MAX_TOPIC",
    "SUBJECT_HEADER",
    "group_id",
    "is_hashed",
    "pattern_regex",
    "reply_topic",
    "retry_topic",
    "subject_of",
    "topic_of",
]

MAX_TOPIC = 249
SUBJECT_HEADER = "mb-subject"
"""Header carrying the subject of records on hashed (long-subject) topics and retry topics."""
_CUT = 230
_ESCAPES = str.maketrans({"-": "--", "_": "-u"})
_TOKEN = r"(?:[A-Za-z0-9]|-[-u])+"
_HASHED = r"[A-Za-z0-9.-]*-h[0-9a-f]{16}"


def _digest(text: str, size: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:size]


def topic_of(subject: str) -> str:
    """The topic of ``subject`` (see the module docstring)."""
    topic = subject.translate(_ESCAPES)
    if len(topic) <= MAX_TOPIC:
        return topic
    cut = topic[:_CUT]
    trailing = len(cut) - len(cut.rstrip("-"))
    if trailing % 2:  # do not end inside a "--" or "-u" escape
        cut = cut[:-1]
    return f"{cut}-h{_digest(subject, 16)}"


def is_hashed(topic: str) -> bool:
    """True for a topic of a long subject, whose subject travels in a header."""
    at = len(topic) - 18
    if at < 0 or topic[at : at + 2] != "-h":
        return False
    run = len(topic[: at + 1]) - len(topic[: at + 1].rstrip("-"))
    return run % 2 == 1


def subject_of(topic: str) -> str:
    """The subject whose topic is ``topic`` (not for hashed topics)."""
    if "-" not in topic:
        return topic
    out: list[str] = []
    escape = False
    for char in topic:
        if escape:
            out.append("_" if char == "u" else "-")
            escape = False
        elif char == "-":
            escape = True
        else:
            out.append(char)
    return "".join(out)


def pattern_regex(pattern: str) -> str:
    """A regular expression matching the topics of every subject ``pattern`` matches (and
    every hashed topic when the pattern has wildcards: those are filtered by header)."""
    parts: list[str] = []
    for token in pattern.split("."):
        if token == "*":
            parts.append(_TOKEN)
        elif token == ">":
            parts.append(rf"{_TOKEN}(?:\.{_TOKEN})*")
        else:
            parts.append(re.escape(token.translate(_ESCAPES)))
    exact = r"\.".join(parts)
    if "*" in pattern or ">" in pattern:
        return f"^(?:{exact}|{_HASHED})$"
    return f"^{exact}$"


def group_id(group: str, pattern: str) -> str:
    """The Kafka consumer group of meshbus ``group`` on ``pattern``: ``<group>@<pattern>``."""
    return f"{group}@{pattern}"


def retry_topic(kafka_group: str) -> str:
    """The retry topic of a consumer group (nacked messages wait there for redelivery)."""
    return f"_mb_retry_{_digest(kafka_group, 20)}"


def reply_topic(client_id: str) -> str:
    """The reply topic of one transport (one client)."""
    return f"_mb_reply_{client_id}"
