"""Configuration: channel URLs, the route table, and the ``MESHBUS_*`` environment variables.

``MESHBUS_URL``
    the default channel, e.g. ``nats://nats:4222``.
``MESHBUS_ROUTES``
    subject patterns routed to other channels, as ``pattern=url`` entries separated by ``;``,
    newlines or commas (a comma inside a URL, as in ``kafka://k1:9092,k2:9092``, stays part of
    the URL), or as a JSON object: ``thumbs.>=file:///shared/thumbs; pricing.>=dns://pricing:7000``.
``MESHBUS_LISTEN``
    the address this process serves its subscriptions on for direct peers, e.g.
    ``tcp://0.0.0.0:7000``.

Arguments given to ``meshbus.connect`` win over the environment, each on its own.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from meshbus.errors import ConfigurationError, InvalidRoutes, InvalidSubject, InvalidURL
from meshbus.subjects import validate_pattern

__all__ = [
    "ENV_LISTEN",
    "ENV_ROUTES",
    "ENV_URL",
    "BusConfig",
    "parse_routes",
    "parse_url",
    "resolve_config",
]

ENV_URL = "MESHBUS_URL"
ENV_ROUTES = "MESHBUS_ROUTES"
ENV_LISTEN = "MESHBUS_LISTEN"

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
# An entry starts wherever "pattern=scheme://" begins after a separator.
_ENTRY_START = re.compile(r"[;\n]|,(?=\s*[A-Za-z0-9_*>.-]+\s*=\s*[A-Za-z][A-Za-z0-9+.-]*://)")


def parse_url(url: object) -> SplitResult:
    """Split a channel URL, checking that it has a scheme and ``://``."""
    if not isinstance(url, str):
        raise InvalidURL(repr(url), f"a channel URL is a str, not {type(url).__name__}")
    text = url.strip()
    scheme, sep, _ = text.partition("://")
    if not sep or not _SCHEME.fullmatch(scheme):
        raise InvalidURL(url, "expected scheme://..., for example nats://nats:4222 or memory://app")
    return urlsplit(text)


def parse_routes(text: str) -> dict[str, str]:
    """Parse ``MESHBUS_ROUTES`` text into ``{pattern: url}``."""
    stripped = text.strip()
    if not stripped:
        return {}
    if stripped.startswith("{"):
        try:
            loaded = json.loads(stripped)
        except ValueError as exc:
            raise InvalidRoutes(f"{ENV_ROUTES} looks like JSON but does not parse: {exc}") from exc
        if not isinstance(loaded, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in loaded.items()
        ):
            raise InvalidRoutes(f"{ENV_ROUTES} as JSON must be an object of pattern to URL strings")
        return check_routes(loaded)
    routes: dict[str, str] = {}
    for raw in _ENTRY_START.split(stripped):
        entry = raw.strip()
        if not entry:
            continue
        pattern, sep, url = entry.partition("=")
        if not sep or not pattern.strip() or not url.strip():
            raise InvalidRoutes(
                f"route entry {entry!r} is not 'pattern=url' "
                "(entries look like 'thumbs.>=file:///shared/thumbs', separated by ';')"
            )
        if pattern.strip() in routes:
            raise InvalidRoutes(f"pattern {pattern.strip()!r} is routed twice")
        routes[pattern.strip()] = url.strip()
    return check_routes(routes)


def check_routes(routes: Mapping[str, str]) -> dict[str, str]:
    """Validate every pattern and URL of a route table."""
    if not isinstance(routes, Mapping):
        raise InvalidRoutes(
            f"routes must be a mapping of pattern to URL, not {type(routes).__name__}"
        )
    checked: dict[str, str] = {}
    for pattern, url in routes.items():
        try:
            validate_pattern(pattern)
        except InvalidSubject as exc:
            raise InvalidRoutes(f"route pattern {pattern!r} is not valid: {exc.reason}") from exc
        try:
            parse_url(url)
        except InvalidURL as exc:
            raise InvalidRoutes(f"route {pattern!r}: {exc}") from exc
        checked[pattern] = url.strip()
    return checked


@dataclass(frozen=True)
class BusConfig:
    """Where a bus's subjects go: the default URL, routes, and the listen address."""

    url: str
    routes: dict[str, str]
    listen: str | None


def resolve_config(
    url: str | None,
    routes: Mapping[str, str] | None,
    listen: str | None,
    environ: Mapping[str, str] | None = None,
) -> BusConfig:
    """Combine arguments and environment (arguments win) and validate the result."""
    env = os.environ if environ is None else environ
    chosen_url = url if url is not None else env.get(ENV_URL)
    if chosen_url is None or not str(chosen_url).strip():
        raise ConfigurationError(
            f"no channel URL: pass one to meshbus.connect() or set {ENV_URL} "
            "(for example memory://app, nats://nats:4222, dns://pricing:7000)"
        )
    parse_url(chosen_url)
    if routes is not None:
        chosen_routes = check_routes(routes)
    else:
        chosen_routes = parse_routes(env.get(ENV_ROUTES, ""))
    chosen_listen = listen if listen is not None else (env.get(ENV_LISTEN) or None)
    if chosen_listen is not None:
        parse_url(chosen_listen)
    return BusConfig(str(chosen_url).strip(), chosen_routes, chosen_listen)
