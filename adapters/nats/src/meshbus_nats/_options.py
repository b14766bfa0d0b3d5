"""Settings of a ``nats://`` channel, from its URL query and the bus's ``options["nats"]``."""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlunsplit

from meshbus.errors import InvalidURL
from meshbus.kit import channel_settings, move_typed, reject_unknown, split_hosts, take_tls

__all__ = ["NatsOptions"]

_NAME = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True, slots=True)
class NatsOptions:
    """What a ``nats://`` channel is configured with (see the README's NATS section)."""

    servers: list[str]
    """Server URLs handed to nats-py (credentials in them are kept)."""
    stream_prefix: str = "MB_"
    """Streams meshbus creates are named ``<stream_prefix><first subject token>``."""
    request_prefix: str = "_mbrpc"
    """Requests travel as core NATS messages on ``<request_prefix>.<subject>``."""
    max_deliver: int = 5
    """Deliveries of one message to a group before it is dead-lettered (-1: no limit)."""
    ack_wait: float = 30.0
    """Seconds a delivered group message may stay unsettled before JetStream redelivers it."""
    ack_timeout: float = 5.0
    """Seconds to wait for one JetStream PubAck before publishing again (same Nats-Msg-Id)."""
    connect_timeout: float = 2.0
    """Seconds for the first connection; failing it raises ``ConnectFailed``."""
    reconnect_wait: float = 0.5
    """Seconds between reconnect attempts."""
    buffer: int = 10_000
    """Messages a broadcast subscription buffers before it stops reading (NATS then drops
    messages for it as a slow consumer)."""
    tls: ssl.SSLContext | None = None
    """TLS context (``options={"nats": {"tls": ctx}}``); ``tls://`` URLs work too."""
    client_options: Mapping[str, Any] = field(default_factory=dict)
    """Further keyword arguments for ``nats.connect`` (credentials files, tokens, names)."""

    @classmethod
    def parse(cls, url: str, options: Mapping[str, Any]) -> NatsOptions:
        """Read ``nats://[user:pass@]host:port[,host:port...]?option=value``."""
        parts, settings = channel_settings(url, options)
        if not parts.netloc:
            raise InvalidURL(url, "nats:// needs a host, e.g. nats://localhost:4222")
        userinfo, hosts = split_hosts(parts.netloc)
        auth = f"{userinfo}@" if userinfo else ""
        servers = [urlunsplit((parts.scheme, f"{auth}{host}", "", "", "")) for host in hosts]
        values: dict[str, Any] = {"servers": servers}
        try:
            for name in ("stream_prefix", "request_prefix"):
                if name in settings:
                    values[name] = str(settings.pop(name))
                    if not _NAME.fullmatch(values[name]):
                        raise ValueError(f"{name} must match [A-Za-z0-9_-]+")
            move_typed(
                settings,
                values,
                ints=("max_deliver", "buffer"),
                floats=("ack_wait", "ack_timeout", "connect_timeout", "reconnect_wait"),
            )
        except (TypeError, ValueError) as exc:
            raise InvalidURL(url, f"bad nats:// option: {exc}") from exc
        take_tls(url, "nats", settings, values)
        if "client_options" in settings:
            values["client_options"] = dict(settings.pop("client_options"))
        reject_unknown(url, "nats", settings)
        made = cls(**values)
        if made.max_deliver == 0 or made.max_deliver < -1 or made.buffer < 1:
            raise InvalidURL(url, "max_deliver is -1 or at least 1; buffer at least 1")
        if min(made.ack_wait, made.ack_timeout, made.connect_timeout) <= 0:
            raise InvalidURL(url, "ack_wait, ack_timeout and connect_timeout must be > 0")
        return made
