"""Reading a channel's settings from its URL and the bus's ``options``."""

from __future__ import annotations

import ssl
from collections.abc import Container, Iterable, Mapping
from typing import Any
from urllib.parse import SplitResult, parse_qsl

from meshbus.config import parse_url
from meshbus.errors import InvalidURL

__all__ = [
    "channel_settings",
    "move_typed",
    "parse_flag",
    "reject_unknown",
    "split_hosts",
    "take_tls",
]

_TRUE = frozenset(("1", "true", "yes", "on"))
_FALSE = frozenset(("0", "false", "no", "off"))


def channel_settings(
    url: str, options: Mapping[str, Any] | None, *, query: Container[str] | None = None
) -> tuple[SplitResult, dict[str, Any]]:
    """Split ``url`` (``InvalidURL`` unless it is ``scheme://...``) and gather its settings:
    each name of its query string with its last value, then ``options`` over them (options
    win: they may hold what text cannot, such as an ``ssl.SSLContext``).

    ``query``, where given, names the query-string settings that are the channel's own; the
    others are left out (a channel that hands them on to its client library reads them from
    ``parts.query`` itself). Take the known names out of the dict as you read them
    (``move_typed``, ``take_tls``), then ``reject_unknown`` what is left."""
    parts = parse_url(url)
    settings: dict[str, Any] = {
        name: value for name, value in parse_qsl(parts.query) if query is None or name in query
    }
    if options:
        settings.update(options)
    return parts, settings


def split_hosts(netloc: str) -> tuple[str, list[str]]:
    """``(userinfo, hosts)`` of a URL's network location that may list several hosts:
    ``user:pass@h1:4222,h2:4222`` gives ``("user:pass", ["h1:4222", "h2:4222"])``; empty
    entries are dropped, and ``userinfo`` is ``""`` where there is none."""
    userinfo, _, hosts = netloc.rpartition("@")
    return userinfo, [host for host in hosts.split(",") if host]


def parse_flag(value: object) -> bool:
    """A boolean setting: a ``bool`` as it is, or ``1``/``true``/``yes``/``on`` and
    ``0``/``false``/``no``/``off`` in any case; ``ValueError`` for anything else."""
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{value!r} is not a boolean (true/false)")


def move_typed(
    settings: dict[str, Any],
    values: dict[str, Any],
    *,
    ints: Iterable[str] = (),
    floats: Iterable[str] = (),
    strs: Iterable[str] = (),
    flags: Iterable[str] = (),
) -> None:
    """Move the named settings that are present from ``settings`` into ``values``, converted
    (``flags`` by ``parse_flag``); ``ValueError`` or ``TypeError`` when one does not convert,
    which the caller raises as ``InvalidURL``."""
    kinds: tuple[tuple[Iterable[str], Any], ...] = (
        (ints, int),
        (floats, float),
        (strs, str),
        (flags, parse_flag),
    )
    for names, kind in kinds:
        for name in names:
            if name in settings:
                values[name] = kind(settings.pop(name))


def take_tls(url: str, label: str, settings: dict[str, Any], values: dict[str, Any]) -> None:
    """Move the ``tls`` setting into ``values``; ``InvalidURL`` unless it is an
    ``ssl.SSLContext`` (which only ``options`` can give). ``label`` names the channel in the
    message."""
    if "tls" in settings:
        tls = settings.pop("tls")
        if not isinstance(tls, ssl.SSLContext):
            raise InvalidURL(url, f"the {label} 'tls' option is an ssl.SSLContext")
        values["tls"] = tls


def reject_unknown(url: str, label: str, settings: dict[str, Any]) -> None:
    """``InvalidURL`` naming whatever is left in ``settings``: options the channel does not
    know (``label`` is its scheme)."""
    if settings:
        raise InvalidURL(url, f"unknown {label}:// options: {', '.join(sorted(settings))}")
