"""aiokafka's exceptions mapped onto meshbus's error tree, in this one place.

One table, most specific class first; the original exception is kept as ``__cause__``.
"""

from __future__ import annotations

import aiokafka.errors as kafka

from meshbus.errors import (
    AuthenticationFailed,
    Closed,
    ConnectFailed,
    ConnectionLost,
    PayloadTooLarge,
    ProtocolError,
    PublishRejected,
    TransportError,
)
from meshbus.kit import as_error, during, error_mapper, error_table, timed_out

__all__ = ["KAFKA_ERRORS", "mapped", "translate"]

KAFKA_ERRORS = (kafka.KafkaError, kafka.ConsumerStoppedError, OSError, TimeoutError)
"""What aiokafka raises (``ConsumerStoppedError`` is not a ``KafkaError``)."""

_AUTH = (
    kafka.AuthenticationFailedError,
    kafka.TopicAuthorizationFailedError,
    kafka.GroupAuthorizationFailedError,
    kafka.ClusterAuthorizationFailedError,
)
_REFUSED = as_error(PublishRejected, "Kafka refused {op}{where}: {exc}")

translate = error_table(
    (
        (
            (kafka.MessageSizeTooLargeError, kafka.RecordTooLargeError),
            lambda f: PayloadTooLarge(0, 0, f.subject),
        ),
        (
            _AUTH,
            as_error(
                AuthenticationFailed, "Kafka refused the credentials or access ({op}{where}): {exc}"
            ),
        ),
        (
            BaseException,
            during(
                "connect", as_error(ConnectFailed, "cannot connect to Kafka at {subject}: {exc!r}")
            ),
        ),
        (
            (kafka.KafkaTimeoutError, kafka.RequestTimedOutError, TimeoutError),
            timed_out("Kafka did not take the {op}{where} within {timeout:g} s"),
        ),
        (
            (kafka.ProducerClosed, kafka.ConsumerStoppedError),
            as_error(Closed, "the Kafka client is closed; cannot {op}{where}"),
        ),
        (
            (kafka.CorruptRecordException, kafka.UnsupportedVersionError),
            as_error(ProtocolError, "Kafka protocol error during {op}{where}: {exc}"),
        ),
        (
            kafka.BrokerResponseError,  # one worth retrying is a connection problem (below)
            lambda f: None if getattr(f.exc, "retriable", False) else _REFUSED(f),
        ),
        (
            (
                kafka.KafkaConnectionError,
                kafka.NodeNotReadyError,
                kafka.NoBrokersAvailable,
                kafka.KafkaUnavailableError,
                OSError,
            ),
            as_error(ConnectionLost, "the Kafka connection failed during {op}{where}: {exc}"),
        ),
    ),
    otherwise=as_error(TransportError, "Kafka failed during {op}{where}: {exc!r}"),
)
"""``translate(exc, op, subject="", timeout=0.0)``: the meshbus error for ``exc``, raised by
aiokafka while doing ``op`` (``connect``, ``publish``, ``request``, ``subscribe``,
``commit``...) on ``subject``."""

mapped = error_mapper(KAFKA_ERRORS, translate)
"""Raise aiokafka's exceptions inside the block as meshbus errors (``from`` the original)."""
