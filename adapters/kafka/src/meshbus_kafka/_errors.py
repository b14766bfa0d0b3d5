"""aiokafka's exceptions mapped onto meshbus's error tree, in this one place.

Most specific class first; the original exception is kept as ``__cause__``.
"""

from __future__ import annotations

import aiokafka.errors as kafka

from meshbus._adapters import error_mapper
from meshbus.errors import (
    AuthenticationFailed,
    Closed,
    ConnectFailed,
    ConnectionLost,
    MeshbusError,
    PayloadTooLarge,
    ProtocolError,
    PublishRejected,
    PublishTimeout,
    RequestTimeout,
    TransportError,
)

__all__ = ["KAFKA_ERRORS", "mapped", "translate"]

KAFKA_ERRORS = (kafka.KafkaError, kafka.ConsumerStoppedError, OSError, TimeoutError)
"""What aiokafka raises (``ConsumerStoppedError`` is not a ``KafkaError``)."""

_AUTH = (
    kafka.AuthenticationFailedError,
    kafka.TopicAuthorizationFailedError,
    kafka.GroupAuthorizationFailedError,
    kafka.ClusterAuthorizationFailedError,
)


def translate(exc: BaseException, op: str, subject: str = "", timeout: float = 0.0) -> MeshbusError:
    """The meshbus error for ``exc``, raised by aiokafka while doing ``op`` (``connect``,
    ``publish``, ``request``, ``subscribe``, ``commit``...) on ``subject``."""
    where = f" on {subject!r}" if subject else ""
    if isinstance(exc, MeshbusError):
        return exc
    if isinstance(exc, kafka.MessageSizeTooLargeError | kafka.RecordTooLargeError):
        return PayloadTooLarge(0, 0, subject)
    if isinstance(exc, _AUTH):
        return AuthenticationFailed(f"Kafka refused the credentials or access ({op}{where}): {exc}")
    if op == "connect":
        return ConnectFailed(f"cannot connect to Kafka at {subject or '?'}: {exc!r}")
    if isinstance(exc, kafka.KafkaTimeoutError | kafka.RequestTimedOutError | TimeoutError):
        if op == "request":
            return RequestTimeout(subject, timeout)
        return PublishTimeout(f"Kafka did not take the {op}{where} within {timeout:g} s")
    if isinstance(exc, kafka.ProducerClosed | kafka.ConsumerStoppedError):
        return Closed(f"the Kafka client is closed; cannot {op}{where}")
    if isinstance(exc, kafka.CorruptRecordException | kafka.UnsupportedVersionError):
        return ProtocolError(f"Kafka protocol error during {op}{where}: {exc}")
    if isinstance(exc, kafka.BrokerResponseError) and not getattr(exc, "retriable", False):
        return PublishRejected(f"Kafka refused {op}{where}: {exc}")
    if isinstance(
        exc,
        kafka.KafkaConnectionError
        | kafka.NodeNotReadyError
        | kafka.NoBrokersAvailable
        | kafka.KafkaUnavailableError
        | OSError,
    ):
        return ConnectionLost(f"the Kafka connection failed during {op}{where}: {exc}")
    return TransportError(f"Kafka failed during {op}{where}: {exc!r}")


mapped = error_mapper(KAFKA_ERRORS, translate)
"""Raise aiokafka's exceptions inside the block as meshbus errors (``from`` the original)."""
