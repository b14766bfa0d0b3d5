"""aio-pika's and aiormq's exceptions mapped onto meshbus's error tree, in this one place.

Most specific class first; the original exception is kept as ``__cause__``.
"""

from __future__ import annotations

import asyncio

import aiormq.exceptions as amqp

from meshbus._adapters import error_mapper
from meshbus.errors import (
    AuthenticationFailed,
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

__all__ = ["AMQP_ERRORS", "mapped", "translate"]

AMQP_ERRORS = (amqp.AMQPError, amqp.ChannelInvalidStateError, OSError, TimeoutError)
"""What aio-pika and aiormq raise when the broker or the connection fails."""


def translate(exc: BaseException, op: str, subject: str = "", timeout: float = 0.0) -> MeshbusError:
    """The meshbus error for ``exc``, raised by aio-pika/aiormq while doing ``op``
    (``connect``, ``publish``, ``request``, ``subscribe``, ``settle``...) on ``subject``."""
    where = f" on {subject!r}" if subject else ""
    if isinstance(exc, MeshbusError):
        return exc
    if isinstance(exc, amqp.PublishError):
        if op == "request":
            return NoResponders(subject)
        return PublishRejected(f"RabbitMQ returned the message{where}: nothing is bound")
    if isinstance(exc, amqp.DeliveryError):
        return PublishRejected(f"RabbitMQ refused (nacked) the {op}{where}")
    if isinstance(exc, amqp.AuthenticationError | amqp.ProbableAuthenticationError):
        return AuthenticationFailed(f"RabbitMQ refused the credentials: {exc}")
    if isinstance(exc, amqp.ChannelAccessRefused):
        return AuthenticationFailed(f"RabbitMQ refused access during {op}{where}: {exc}")
    if isinstance(exc, amqp.ConnectionFrameError) and "message" in str(exc).lower():
        return PayloadTooLarge(0, 0, subject)
    if op == "connect":
        return ConnectFailed(f"cannot connect to RabbitMQ at {subject or '?'}")
    if isinstance(exc, amqp.ChannelPreconditionFailed):
        return PublishRejected(f"RabbitMQ refused {op}{where} (precondition failed): {exc}")
    if isinstance(exc, amqp.ChannelNotFoundEntity):
        return PublishRejected(f"RabbitMQ has no such queue or exchange ({op}{where}): {exc}")
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        if op == "request":
            return RequestTimeout(subject, timeout)
        return PublishTimeout(f"RabbitMQ did not confirm the {op}{where} within {timeout:g} s")
    if isinstance(exc, amqp.ChannelInvalidStateError):
        return ConnectionLost(f"the RabbitMQ channel closed during {op}{where}")
    if isinstance(exc, amqp.ConnectionClosed | amqp.ChannelClosed | amqp.AMQPConnectionError):
        return ConnectionLost(f"the RabbitMQ connection failed during {op}{where}: {exc}")
    if isinstance(exc, OSError):
        return ConnectionLost(f"the RabbitMQ connection failed during {op}{where}: {exc}")
    if isinstance(exc, amqp.ProtocolSyntaxError | amqp.MethodNotImplemented):
        return ProtocolError(f"AMQP protocol error during {op}{where}: {exc}")
    return TransportError(f"RabbitMQ failed during {op}{where}: {exc!r}")


mapped = error_mapper(AMQP_ERRORS, translate)
"""Raise aio-pika's exceptions inside the block as meshbus errors (``from`` the original)."""
