"""Settings of an ``amqp://`` channel, from its URL query and the bus's ``options["amqp"]``
(``options["amqps"]`` for an ``amqps://`` URL: the bus hands each channel its scheme's)."""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlunsplit

from meshbus.errors import InvalidURL
from meshbus.kit import channel_settings, move_typed, reject_unknown, take_tls

__all__ = ["DEFAULT_MAX_PAYLOAD", "RabbitOptions"]

_NAME = re.compile(r"[A-Za-z0-9_.-]+")
DEFAULT_MAX_PAYLOAD = 16 * 1024 * 1024
"""16 MiB: well under RabbitMQ's ``max_message_size`` (128 MiB by default since 3.8), and large
messages stall a queue's other traffic; raise it with ``?max_payload=`` up to the broker's."""
BROKER_MAX = 512 * 1024 * 1024
"""RabbitMQ's hard ceiling for ``max_message_size``."""
_OURS = {
    "exchange", "queue_prefix", "max_deliver", "max_payload", "connect_timeout",
    "reconnect_wait", "confirm_timeout", "tls",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class RabbitOptions:
    """What an ``amqp://`` channel is configured with (see the README's RabbitMQ section)."""

    url: str
    """The URL handed to aio-pika: meshbus's own query options removed, aio-pika's kept
    (``heartbeat``, ``name``, ``cafile``...)."""
    exchange: str = "meshbus"
    """The durable topic exchange that carries every subject."""
    queue_prefix: str = "mb."
    """Queues meshbus declares are named ``<queue_prefix><exchange>.…`` (see ``_naming``)."""
    max_deliver: int = 5
    """Deliveries of one message to a group before it is dead-lettered (-1: no limit)."""
    max_payload: int = DEFAULT_MAX_PAYLOAD
    """Largest payload in bytes; larger ones raise ``PayloadTooLarge`` before sending."""
    connect_timeout: float = 5.0
    """Seconds for the first connection; failing it raises ``ConnectFailed``."""
    reconnect_wait: float = 0.5
    """Seconds before the first reconnect attempt; doubles up to 5 s between attempts."""
    confirm_timeout: float = 10.0
    """Seconds to wait for a publisher confirm before publishing again (after a reconnect)."""
    tls: ssl.SSLContext | None = None
    """TLS context for ``amqps://`` (``options={"amqps": {"tls": ctx}}``)."""

    @classmethod
    def parse(cls, url: str, options: Mapping[str, Any]) -> RabbitOptions:
        """Read ``amqp[s]://[user:pass@]host[:port][/vhost][?option=value]``."""
        parts, settings = channel_settings(url, options, query=_OURS)
        if not parts.netloc or not parts.netloc.rpartition("@")[2]:
            raise InvalidURL(url, "amqp:// needs a host, e.g. amqp://guest:guest@localhost/")
        theirs = [(k, v) for k, v in parse_qsl(parts.query) if k not in _OURS]
        client_url = urlunsplit(
            (parts.scheme, parts.netloc, parts.path, urlencode(theirs), parts.fragment)
        )
        values: dict[str, Any] = {"url": client_url}
        try:
            for name in ("exchange", "queue_prefix"):
                if name in settings:
                    values[name] = str(settings.pop(name))
                    if not _NAME.fullmatch(values[name]) or values[name].startswith("amq."):
                        raise ValueError(f"{name} must match [A-Za-z0-9_.-]+, not amq.*")
            move_typed(
                settings,
                values,
                ints=("max_deliver", "max_payload"),
                floats=("connect_timeout", "reconnect_wait", "confirm_timeout"),
            )
        except (TypeError, ValueError) as exc:
            raise InvalidURL(url, f"bad amqp:// option: {exc}") from exc
        take_tls(url, "amqp", settings, values)
        reject_unknown(url, "amqp", settings)
        made = cls(**values)
        if made.max_deliver == 0 or made.max_deliver < -1:
            raise InvalidURL(url, "max_deliver is -1 or at least 1")
        if not 0 < made.max_payload <= BROKER_MAX:
            raise InvalidURL(url, f"max_payload must be between 1 and {BROKER_MAX}")
        if min(made.connect_timeout, made.reconnect_wait, made.confirm_timeout) <= 0:
            raise InvalidURL(url, "connect_timeout, reconnect_wait, confirm_timeout must be > 0")
        return made
