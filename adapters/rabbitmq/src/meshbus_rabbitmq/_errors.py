"""aio-pika's and aiormq's exceptions mapped onto meshbus's error tree, in this one place.

One table, most specific class first; the original exception is kept as ``__cause__``.
"""

from __future__ import annotations

import aiormq.exceptions as amqp

from meshbus.errors import (
    AuthenticationFailed,
    ConnectFailed,
    ConnectionLost,
    NoResponders,
    PayloadTooLarge,
    ProtocolError,
    PublishRejected,
    TransportError,
)
from meshbus.kit import Failure, as_error, during, error_mapper, error_table, timed_out

__all__ = ["AMQP_ERRORS", "mapped", "translate"]

AMQP_ERRORS = (amqp.AMQPError, amqp.ChannelInvalidStateError, OSError, TimeoutError)
"""What aio-pika and aiormq raise when the broker or the connection fails."""


def _returned(failure: Failure) -> PublishRejected | NoResponders:
    """A message the broker returned: nobody to take it."""
    if failure.op == "request":
        return NoResponders(failure.subject)
    return PublishRejected(f"RabbitMQ returned the message{failure.where}: nothing is bound")


def _frame_too_large(failure: Failure) -> PayloadTooLarge | None:
    """The connection refused a frame: over its size limit where it says so."""
    return PayloadTooLarge(0, 0, failure.subject) if "message" in str(failure.exc).lower() else None


translate = error_table(
    (
        (amqp.PublishError, _returned),
        (
            amqp.DeliveryError,
            as_error(PublishRejected, "RabbitMQ refused (nacked) the {op}{where}"),
        ),
        (
            (amqp.AuthenticationError, amqp.ProbableAuthenticationError),
            as_error(AuthenticationFailed, "RabbitMQ refused the credentials: {exc}"),
        ),
        (
            amqp.ChannelAccessRefused,
            as_error(AuthenticationFailed, "RabbitMQ refused access during {op}{where}: {exc}"),
        ),
        (amqp.ConnectionFrameError, _frame_too_large),
        (
            BaseException,
            during("connect", as_error(ConnectFailed, "cannot connect to RabbitMQ at {subject}")),
        ),
        (
            amqp.ChannelPreconditionFailed,
            as_error(PublishRejected, "RabbitMQ refused {op}{where} (precondition failed): {exc}"),
        ),
        (
            amqp.ChannelNotFoundEntity,
            as_error(
                PublishRejected, "RabbitMQ has no such queue or exchange ({op}{where}): {exc}"
            ),
        ),
        (TimeoutError, timed_out("RabbitMQ did not confirm the {op}{where} within {timeout:g} s")),
        (
            amqp.ChannelInvalidStateError,
            as_error(ConnectionLost, "the RabbitMQ channel closed during {op}{where}"),
        ),
        (
            (amqp.ConnectionClosed, amqp.ChannelClosed, amqp.AMQPConnectionError, OSError),
            as_error(ConnectionLost, "the RabbitMQ connection failed during {op}{where}: {exc}"),
        ),
        (
            (amqp.ProtocolSyntaxError, amqp.MethodNotImplemented),
            as_error(ProtocolError, "AMQP protocol error during {op}{where}: {exc}"),
        ),
    ),
    otherwise=as_error(TransportError, "RabbitMQ failed during {op}{where}: {exc!r}"),
)
"""``translate(exc, op, subject="", timeout=0.0)``: the meshbus error for ``exc``, raised by
aio-pika/aiormq while doing ``op`` (``connect``, ``publish``, ``request``, ``subscribe``,
``ack``...) on ``subject``."""

mapped = error_mapper(AMQP_ERRORS, translate)
"""Raise aio-pika's exceptions inside the block as meshbus errors (``from`` the original)."""
