"""nats-py's exceptions mapped onto meshbus's error tree, in this one place.

Most specific class first; the original exception is kept as ``__cause__``.
"""

from __future__ import annotations

import asyncio

import nats.errors
import nats.js.errors

from meshbus._adapters import error_mapper
from meshbus.errors import (
    AuthenticationFailed,
    Closed,
    ConnectFailed,
    ConnectionLost,
    MeshbusError,
    NoResponders,
    PayloadTooLarge,
    ProtocolError,
    PublishRejected,
    PublishTimeout,
    RequestTimeout,
    TransportError,
)

__all__ = ["mapped", "translate"]


def translate(exc: BaseException, op: str, subject: str = "", timeout: float = 0.0) -> MeshbusError:
    """The meshbus error for ``exc``, raised by nats-py while doing ``op`` (``connect``,
    ``publish``, ``request``, ``subscribe``, ``settle``) on ``subject``."""
    where = f" on {subject!r}" if subject else ""
    if isinstance(exc, MeshbusError):
        return exc
    if isinstance(exc, nats.js.errors.NoStreamResponseError):
        return PublishRejected(f"JetStream did not answer the publish{where} (no stream)")
    if isinstance(exc, nats.errors.NoRespondersError):
        return NoResponders(subject)
    if isinstance(exc, nats.js.errors.APIError):
        return PublishRejected(f"JetStream refused {op}{where}: {exc}")
    if isinstance(exc, nats.errors.MaxPayloadError):
        return PayloadTooLarge(0, 0, subject)
    if isinstance(exc, nats.errors.AuthorizationError):
        return AuthenticationFailed(f"the NATS server refused the credentials: {exc}")
    if op == "connect":
        return ConnectFailed(f"cannot connect to NATS at {subject or '?'}")
    if isinstance(exc, nats.errors.TimeoutError | asyncio.TimeoutError | TimeoutError):
        if op == "request":
            return RequestTimeout(subject, timeout)
        return PublishTimeout(f"NATS did not take the {op}{where} within {timeout:g} s")
    if isinstance(exc, nats.errors.ConnectionClosedError | nats.errors.ConnectionDrainingError):
        return Closed(f"the NATS connection is closed; cannot {op}{where}")
    if isinstance(exc, nats.errors.OutboundBufferLimitError):
        return ConnectionLost(f"NATS is reconnecting and its outgoing buffer is full ({op})")
    if isinstance(exc, nats.errors.NoServersError | OSError):
        return ConnectionLost(f"the NATS connection failed during {op}{where}: {exc}")
    if isinstance(exc, nats.errors.ProtocolError):
        return ProtocolError(f"NATS protocol error during {op}{where}: {exc}")
    return TransportError(f"NATS failed during {op}{where}: {exc!r}")


mapped = error_mapper((nats.errors.Error, OSError, TimeoutError), translate)
"""Raise nats-py's exceptions inside the block as meshbus errors (``from`` the original)."""
