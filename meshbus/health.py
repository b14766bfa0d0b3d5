"""Health reports: what a platform's probes read (``/readyz``, ``/livez`` of ``meshbus run``).

A :class:`ChannelHealth` per channel and listen address (``Bus.health()``), a
:class:`HandlerHealth` per handler, and an :class:`AppHealth` that says whether the service is
ready: started, every channel connected, every handler attached where its deliveries come from,
and not stopping. URLs are shown without passwords or tokens.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["AppHealth", "ChannelHealth", "ChannelState", "HandlerHealth", "redact"]

ChannelState = Literal["connecting", "connected", "reconnecting", "closed"]
"""``connecting`` before the first connection, ``connected``, ``reconnecting`` after a loss
(contract point 11), ``closed``."""

_SECRETS = frozenset({"token", "password", "secret", "sasl_password"})


def redact(url: str) -> str:
    """``url`` with its password and secret query values (``token=`` and the like) replaced
    by ``***``: for logs, errors and health reports."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hosts = netloc.rpartition("@")
        user, sep, _password = userinfo.partition(":")
        netloc = f"{user}{':***' if sep else ''}@{hosts}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if k.lower() in _SECRETS else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


@dataclass(frozen=True, slots=True)
class ChannelHealth:
    """One channel of a bus, or its listen address."""

    url: str
    """The channel's URL, redacted."""
    role: Literal["channel", "listener"]
    state: ChannelState


@dataclass(frozen=True, slots=True)
class HandlerHealth:
    """One handler of an app."""

    subject: str
    group: str | None
    """None for a broadcast handler."""
    attached: bool
    """Its subscription is active where deliveries come from."""


@dataclass(frozen=True, slots=True)
class AppHealth:
    """What ``App.health()`` reports."""

    name: str
    state: Literal["new", "starting", "running", "stopping", "stopped"]
    channels: tuple[ChannelHealth, ...]
    handlers: tuple[HandlerHealth, ...]

    @property
    def ready(self) -> bool:
        """Started, every channel connected, every handler attached, not stopping."""
        return (
            self.state == "running"
            and all(c.state == "connected" for c in self.channels)
            and all(h.attached for h in self.handlers)
        )

    def to_dict(self) -> dict[str, Any]:
        """As JSON-ready data (the body of ``/readyz``)."""
        return {**asdict(self), "ready": self.ready}
