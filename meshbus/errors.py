"""Every error meshbus raises, in one tree.

::

    MeshbusError
    ├── ConfigurationError (ValueError)      bad URL, routes or options; found before connecting
    │   ├── InvalidURL
    │   ├── InvalidRoutes
    │   ├── UnknownScheme (LookupError)       no channel serves this URL scheme
    │   │   └── AdapterNotInstalled          a known scheme whose adapter package is missing
    │   └── AppNotFound                      ``meshbus run module:app`` names no importable App
    ├── InvalidSubject (ValueError)           a subject or pattern that breaks the subject rules
    ├── InvalidHeader (ValueError)            non-str header, or a reserved ``mb-`` name
    ├── PayloadTooLarge (ValueError)          larger than the channel's ``max_payload``
    ├── CodecError
    │   ├── EncodeError (TypeError)           a payload meshbus cannot encode
    │   └── DecodeError (ValueError)          data that is not what the caller asked for
    │       └── InvalidPayload               not what a handler's annotation asks: dead-lettered
    ├── SettlementError
    │   ├── AlreadySettled                   ack / nack / reject twice
    │   └── NotARequest                      ``respond()`` to a message that expects no reply
    ├── Closed                                the bus or subscription is closed (or closing)
    │   └── NotStarted                       used before ``await bus`` / ``async with bus``
    ├── MeshbusTimeout (TimeoutError)
    │   ├── RequestTimeout                   no reply within the request's timeout
    │   └── PublishTimeout                   the channel did not take the message in time
    ├── NoResponders (LookupError)            a request that nobody subscribes to
    ├── NotSupported                          the channel does not offer this operation
    ├── StartupFailed                         an App's channel, hook or lifespan failed to start
    ├── TransportError (ConnectionError)      a channel failed underneath
    │   ├── ConnectFailed                    could not connect (first connect fails fast)
    │   ├── ConnectionLost                   a live connection went away
    │   ├── PublishRejected                  the broker or peer refused the message
    │   └── ProtocolError                    malformed frames or files, a wrong version
    │       └── CorruptMessage               a message file that fails its checks (file://)
    ├── AuthenticationFailed (PermissionError) bad credentials or token
    └── DiscoveryError                        resolving a service name (``meshbus.discovery``)
        ├── NameNotFound (LookupError)       a definite answer: the name has no addresses
        ├── LookupFailed                     no usable answer: SERVFAIL, refused, malformed
        │   └── LookupTimeout (MeshbusTimeout) the nameserver did not answer in time
        └── DockerEngineError                the Docker Engine API is unreachable or said no

Adapters map their client library's exceptions onto this tree in one place each, most specific
class first, and keep the original exception as ``__cause__``.
"""

from __future__ import annotations

__all__ = [
    "AdapterNotInstalled",
    "AlreadySettled",
    "AppNotFound",
    "AuthenticationFailed",
    "Closed",
    "CodecError",
    "ConfigurationError",
    "ConnectFailed",
    "ConnectionLost",
    "CorruptMessage",
    "DecodeError",
    "DiscoveryError",
    "DockerEngineError",
    "EncodeError",
    "InvalidHeader",
    "InvalidPayload",
    "InvalidRoutes",
    "InvalidSubject",
    "InvalidURL",
    "LookupFailed",
    "LookupTimeout",
    "MeshbusError",
    "MeshbusTimeout",
    "NameNotFound",
    "NoResponders",
    "NotARequest",
    "NotStarted",
    "NotSupported",
    "PayloadTooLarge",
    "ProtocolError",
    "PublishRejected",
    "PublishTimeout",
    "RequestTimeout",
    "SettlementError",
    "StartupFailed",
    "TransportError",
    "UnknownScheme",
]


class MeshbusError(Exception):
    """Base of every error meshbus raises."""


class ConfigurationError(MeshbusError, ValueError):
    """A URL, route table or option is wrong; found before anything is sent."""


class InvalidURL(ConfigurationError):
    """A channel URL that cannot be parsed or lacks a part the channel needs."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"invalid channel URL {url!r}: {reason}")


class InvalidRoutes(ConfigurationError):
    """A route table (``routes=`` or ``MESHBUS_ROUTES``) that cannot be used."""


class UnknownScheme(ConfigurationError, LookupError):
    """No channel is registered for a URL scheme."""

    def __init__(self, scheme: str, available: list[str]) -> None:
        self.scheme = scheme
        self.available = available
        listed = ", ".join(f"{name}://" for name in sorted(available)) or "none"
        super().__init__(
            f"no meshbus channel serves {scheme}:// (installed channels: {listed}); "
            "a third-party channel registers itself under the entry-point group "
            "'meshbus.transports'"
        )


class AdapterNotInstalled(UnknownScheme):
    """A scheme meshbus knows, whose adapter distribution is not installed."""

    def __init__(self, scheme: str, package: str, extra: str, available: list[str]) -> None:
        super().__init__(scheme, available)
        self.package = package
        self.extra = extra
        self.args = (
            f"{scheme}:// needs the {package} adapter, which is not installed: "
            f"pip install 'meshbus[{extra}]'  (or: pip install {package})",
        )


class InvalidSubject(MeshbusError, ValueError):
    """A subject or subscription pattern that breaks the subject rules."""

    def __init__(self, subject: object, reason: str) -> None:
        self.subject = subject
        self.reason = reason
        super().__init__(f"invalid subject {subject!r}: {reason}")


class InvalidHeader(MeshbusError, ValueError):
    """A header that is not ``str -> str``, or that uses the reserved ``mb-`` prefix."""


class PayloadTooLarge(MeshbusError, ValueError):
    """A payload larger than the channel accepts; raised before any byte is sent."""

    def __init__(self, size: int, limit: int, subject: str = "") -> None:
        self.size = size
        self.limit = limit
        self.subject = subject
        where = f" for {subject!r}" if subject else ""
        super().__init__(
            f"payload of {size} bytes{where} is over this channel's limit of {limit} bytes"
        )


class CodecError(MeshbusError):
    """Encoding a payload or decoding message data failed."""


class EncodeError(CodecError, TypeError):
    """A payload of a type meshbus cannot encode."""


class DecodeError(CodecError, ValueError):
    """Message data that does not decode as asked."""


class InvalidPayload(DecodeError):
    """A payload that does not decode into a handler's annotated type: the runtime
    dead-letters it at once with this as the reason, never retried."""


class SettlementError(MeshbusError):
    """A message was settled in a way the contract does not allow."""


class AlreadySettled(SettlementError):
    """``ack``, ``nack`` or ``reject`` on a message that is already settled."""


class NotARequest(SettlementError):
    """``respond()`` on a message that was published, not sent by ``request()``."""


class Closed(MeshbusError):
    """The bus or subscription is closed, or closing, and takes no new work."""


class NotStarted(Closed):
    """The bus was used before it was started (``await bus`` or ``async with bus``)."""


class MeshbusTimeout(MeshbusError, TimeoutError):
    """An operation did not finish within its timeout."""


class RequestTimeout(MeshbusTimeout):
    """No reply came within the request's timeout."""

    def __init__(self, subject: str, timeout: float) -> None:
        self.subject = subject
        self.timeout = timeout
        super().__init__(f"no reply to a request on {subject!r} within {timeout:g} s")


class PublishTimeout(MeshbusTimeout):
    """The channel did not take responsibility for a message within the timeout."""


class NoResponders(MeshbusError, LookupError):
    """A request to a subject that nobody subscribes to (where the channel can tell)."""

    def __init__(self, subject: str) -> None:
        self.subject = subject
        super().__init__(f"no responders subscribe to {subject!r}")


class NotSupported(MeshbusError):
    """The channel does not offer this operation."""


class TransportError(MeshbusError, ConnectionError):
    """A channel failed underneath: connection, broker or peer."""


class ConnectFailed(TransportError):
    """Could not connect to a broker or peer."""


class ConnectionLost(TransportError):
    """A live connection to a broker or peer went away."""


class PublishRejected(TransportError):
    """The broker or peer refused to take the message."""


class ProtocolError(TransportError):
    """Malformed frames or files, or a peer that speaks another protocol version."""


class CorruptMessage(ProtocolError):
    """A message file that is truncated, has a bad checksum, or is not a message file."""


class AuthenticationFailed(MeshbusError, PermissionError):
    """Credentials or the shared token were refused."""


class DiscoveryError(MeshbusError):
    """Resolving or watching a service name failed (``meshbus.discovery``)."""


class NameNotFound(DiscoveryError, LookupError):
    """A definite answer that a name has no addresses: NXDOMAIN, or no A/AAAA records.

    ``nxdomain`` tells the two apart (``True``: the name does not exist at all).
    """

    def __init__(self, name: str, nxdomain: bool) -> None:
        self.name = name
        self.nxdomain = nxdomain
        what = "does not exist (NXDOMAIN)" if nxdomain else "has no address records"
        super().__init__(f"{name!r} {what}")


class LookupFailed(DiscoveryError):
    """No usable answer: SERVFAIL, REFUSED, a malformed or truncated reply, or no reply.

    Unlike :class:`NameNotFound` this says nothing about whether the name exists; a watcher
    keeps its last good set. ``rcode`` is the DNS response code where one came back.
    """

    def __init__(self, name: str, reason: str, rcode: int | None = None) -> None:
        self.name = name
        self.reason = reason
        self.rcode = rcode
        super().__init__(f"looking up {name!r} failed: {reason}")


class LookupTimeout(LookupFailed, MeshbusTimeout):
    """The nameserver did not answer (with a matching reply) within the timeout."""


class DockerEngineError(DiscoveryError):
    """The Docker Engine API could not be reached, or answered with an error.

    ``status`` is the HTTP status where the engine answered (404: no such container or
    network), ``None`` when it could not be reached at all.
    """

    def __init__(self, reason: str, status: int | None = None) -> None:
        self.reason = reason
        self.status = status
        super().__init__(reason)


class StartupFailed(MeshbusError):
    """An App did not start: a channel, a startup hook or its lifespan failed (``meshbus run``
    exits 1)."""


class AppNotFound(ConfigurationError):
    """``meshbus run module:app`` names nothing importable, or not a ``meshbus.App``."""
