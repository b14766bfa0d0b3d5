"""How meshbus subjects and groups map onto NATS names.

- **Requests** travel as core NATS messages on ``<request_prefix>.<subject>`` (``_mbrpc.``
  by default), so that they reach responders without passing through a stream.
- A **stream** covers one subject space, the first token of a subject: meshbus creates
  ``<stream_prefix><space>`` (``MB_orders``) capturing ``orders`` and ``orders.>``. A stream
  that already captures the subjects (made by an operator or another application) is used
  instead (see ``_streams``).
- A **consumer** is one group on one pattern: the durable push consumer
  ``<group>_<10 hex digits of sha256(pattern)>``, delivering to ``_MB.D.<stream>.<consumer>``
  as queue group ``<consumer>``; members are core queue subscribers of that subject.
- Groups on a pattern whose first token is a wildcard are not supported (no space to own).
"""

from __future__ import annotations

import hashlib

__all__ = ["consumer_name", "deliver_subject", "request_subject", "space_of", "stream_name"]


def space_of(subject: str) -> str:
    """The first token of ``subject``."""
    return subject.partition(".")[0]


def stream_name(prefix: str, space: str) -> str:
    """The stream meshbus creates for the subject space ``space``."""
    return f"{prefix}{space}"


def consumer_name(group: str, pattern: str) -> str:
    """The durable consumer name of ``group`` on ``pattern``."""
    return f"{group}_{hashlib.sha256(pattern.encode()).hexdigest()[:10]}"


def deliver_subject(stream: str, consumer: str) -> str:
    """Where the durable consumer ``consumer`` of ``stream`` delivers its messages."""
    return f"_MB.D.{stream}.{consumer}"


def request_subject(prefix: str, subject: str) -> str:
    """The core NATS subject a request to ``subject`` (or a pattern) travels on."""
    return f"{prefix}.{subject}"
