"""Direct-channel URLs: ``tcp://host:port[,host:port...]?option=value``.

Options (URL query, or ``options={"tcp": {...}}`` for those that are not text):

``token``          shared secret every peer's hello must carry
``heartbeat``      seconds of silence before a PING (a peer silent for three is dead); 5
``hello_timeout``  seconds a new peer has to say hello; 5
``credit``         PUBs a listener lets one peer have in flight; 1024
``max_payload``    largest payload in bytes; 64 MiB
``buffer``         undelivered messages a local broadcast subscriber may hold; 10000
``rcvbuf``         a listen address only: the receive buffer of its connections in bytes
                   (``SO_RCVBUF``, which Linux caps at ``net.core.rmem_max``); 0 leaves the
                   system's autotuning. Default: 1 MiB where ``rmem_max`` allows that much,
                   else autotuning (see ``default_rcvbuf``)
``reuse_port``     a listen address only: ``1`` to share the port with other processes
                   (``SO_REUSEPORT``; what ``meshbus run --workers N`` sets); 0
``connect_timeout``  seconds ``start()`` waits for a first peer; 10
``reconnect_min`` / ``reconnect_max``  reconnect backoff bounds in seconds; 0.1 / 5
``ssl``            an ``ssl.SSLContext`` (options only)
"""

from __future__ import annotations

import ssl as ssl_module
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from meshbus.channels.direct.connection import ConnectionSettings
from meshbus.channels.direct.frames import DEFAULT_MAX_FRAME
from meshbus.errors import InvalidURL
from meshbus.kit import channel_settings, move_typed, reject_unknown

__all__ = ["DEFAULT_RCVBUF", "DirectConfig", "default_rcvbuf"]

DEFAULT_MAX_PAYLOAD = 64 * 1024 * 1024
DEFAULT_RCVBUF = 1024 * 1024
"""A listener's receive buffer. Under the system's autotuning it grows to tens of MiB, and a
listener that falls behind its publishers then reads from a queue that long, out of its CPU
caches and slower for it, so it stays behind (measured: docs/benchmarks.md). 1 MiB still
covers 10 Gbit/s with a round trip of up to 0.8 ms."""
_RMEM_MAX = "/proc/sys/net/core/rmem_max"


def default_rcvbuf() -> int:
    """``DEFAULT_RCVBUF`` where the system grants it, else 0 (autotuning). Linux caps
    ``SO_RCVBUF`` at ``net.core.rmem_max``, often 208 KiB, and a buffer that small did worse
    than autotuning, so the default is not forced below what it is meant to be. An ``rcvbuf``
    given in the URL is set as given."""
    try:
        with open(_RMEM_MAX) as limit:
            allowed = int(limit.read())
    except (OSError, ValueError):
        return DEFAULT_RCVBUF  # not Linux: the system takes the value as it is
    return DEFAULT_RCVBUF if allowed >= DEFAULT_RCVBUF else 0


_FLOATS = ("heartbeat", "hello_timeout", "connect_timeout", "reconnect_min", "reconnect_max")
_INTS = ("credit", "max_payload", "buffer")


@dataclass(frozen=True)
class DirectConfig:
    """A parsed direct-channel URL."""

    scheme: str
    addresses: list[tuple[str, int]]
    settings: ConnectionSettings
    max_payload: int
    buffer: int
    connect_timeout: float
    reconnect_min: float
    reconnect_max: float
    ssl: ssl_module.SSLContext | None
    rcvbuf: int
    """A listen address's SO_RCVBUF in bytes (0: the system's own); 0 for a dialler."""
    reuse_port: bool
    """A listen address shared with other processes through SO_REUSEPORT (``meshbus run
    --workers``); False for a dialler."""
    extra: dict[str, Any]
    """Values of the ``extra`` option names the caller allowed (scheme-specific options)."""

    @classmethod
    def from_url(
        cls,
        url: str,
        options: Mapping[str, Any] | None,
        *,
        listening: bool = False,
        extra: tuple[str, ...] = (),
    ) -> DirectConfig:
        """Parse and check ``url`` plus ``options``; names in ``extra`` are passed through."""
        parts, values = channel_settings(url, options)
        addresses = [_address(url, item) for item in parts.netloc.split(",") if item.strip()]
        if not addresses:
            raise InvalidURL(url, "expected host:port, e.g. tcp://pricing:7000")
        if listening and len(addresses) != 1:
            raise InvalidURL(url, "a listen address names one host:port")
        passed = {name: values.pop(name) for name in extra if name in values}
        context = values.pop("ssl", None)
        if context is not None and not isinstance(context, ssl_module.SSLContext):
            raise InvalidURL(url, "the ssl option must be an ssl.SSLContext (pass it in options=)")
        token = values.pop("token", None)
        reuse_port = str(values.pop("reuse_port", "0")).lower() in ("1", "true", "yes")
        if reuse_port and not listening:
            raise InvalidURL(url, "reuse_port is an option of a listen address")
        numbers: dict[str, float] = {}
        given: dict[str, int] = {}  # rcvbuf, where 0 is a value of its own
        try:
            move_typed(values, numbers, floats=_FLOATS)
            move_typed(values, numbers, ints=_INTS)
            if listening:
                move_typed(values, given, ints=("rcvbuf",))
        except (TypeError, ValueError) as exc:
            raise InvalidURL(url, f"a numeric option is not a number: {exc}") from exc
        reject_unknown(url, parts.scheme, values)
        if "rcvbuf" in given:
            rcvbuf = given["rcvbuf"]
            if not 0 <= rcvbuf < 1 << 31:
                raise InvalidURL(url, "rcvbuf must be 0 (the system's own) or a size in bytes")
        else:  # the system's limit is read only when it decides something
            rcvbuf = default_rcvbuf() if listening else 0
        if any(value <= 0 for value in numbers.values()):
            raise InvalidURL(url, "numeric options must be greater than zero")
        max_payload = int(numbers.get("max_payload", DEFAULT_MAX_PAYLOAD))
        settings = ConnectionSettings(
            token=None if token is None else str(token),
            heartbeat=numbers.get("heartbeat", 5.0),
            hello_timeout=numbers.get("hello_timeout", 5.0),
            max_frame=max(DEFAULT_MAX_FRAME, max_payload + 256 * 1024),
            credit=int(numbers.get("credit", 1024)),
        )
        return cls(
            scheme=parts.scheme,
            addresses=addresses,
            settings=settings,
            max_payload=max_payload,
            buffer=int(numbers.get("buffer", 10_000)),
            connect_timeout=numbers.get("connect_timeout", 10.0),
            reconnect_min=numbers.get("reconnect_min", 0.1),
            reconnect_max=numbers.get("reconnect_max", 5.0),
            ssl=context,
            rcvbuf=rcvbuf,
            reuse_port=reuse_port,
            extra=passed,
        )


def _address(url: str, item: str) -> tuple[str, int]:
    host, sep, port = item.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise InvalidURL(url, f"{item!r} is not host:port")
    return host.strip("[]"), int(port)
