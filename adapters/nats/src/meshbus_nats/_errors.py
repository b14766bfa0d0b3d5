"""nats-py's exceptions mapped onto meshbus's error tree, in this one place.

One table, most specific class first; the original exception is kept as ``__cause__``.
"""

from __future__ import annotations

import nats.errors as errors
import nats.js.errors as js

from meshbus.errors import (
    AuthenticationFailed,
    Closed,
    ConnectFailed,
    ConnectionLost,
    NoResponders,
    PayloadTooLarge,
    ProtocolError,
    PublishRejected,
    TransportError,
)
from meshbus.kit import as_error, during, error_mapper, error_table, timed_out

__all__ = ["NATS_ERRORS", "mapped", "translate"]

NATS_ERRORS = (errors.Error, OSError, TimeoutError)
"""What nats-py raises when the server or the connection fails."""

translate = error_table(
    (
        (
            js.NoStreamResponseError,
            as_error(PublishRejected, "JetStream did not answer the publish{where} (no stream)"),
        ),
        (errors.NoRespondersError, lambda f: NoResponders(f.subject)),
        (js.APIError, as_error(PublishRejected, "JetStream refused {op}{where}: {exc}")),
        (errors.MaxPayloadError, lambda f: PayloadTooLarge(0, 0, f.subject)),
        (
            errors.AuthorizationError,
            as_error(AuthenticationFailed, "the NATS server refused the credentials: {exc}"),
        ),
        (
            BaseException,
            during("connect", as_error(ConnectFailed, "cannot connect to NATS at {subject}")),
        ),
        (
            (errors.TimeoutError, TimeoutError),
            timed_out("NATS did not take the {op}{where} within {timeout:g} s"),
        ),
        (
            (errors.ConnectionClosedError, errors.ConnectionDrainingError),
            as_error(Closed, "the NATS connection is closed; cannot {op}{where}"),
        ),
        (
            errors.OutboundBufferLimitError,
            as_error(ConnectionLost, "NATS is reconnecting and its outgoing buffer is full ({op})"),
        ),
        (
            (errors.NoServersError, OSError),
            as_error(ConnectionLost, "the NATS connection failed during {op}{where}: {exc}"),
        ),
        (
            errors.ProtocolError,
            as_error(ProtocolError, "NATS protocol error during {op}{where}: {exc}"),
        ),
    ),
    otherwise=as_error(TransportError, "NATS failed during {op}{where}: {exc!r}"),
)
"""``translate(exc, op, subject="", timeout=0.0)``: the meshbus error for ``exc``, raised by
nats-py while doing ``op`` (``connect``, ``publish``, ``request``, ``subscribe``, ``ack``...)
on ``subject``."""

mapped = error_mapper(NATS_ERRORS, translate)
"""Raise nats-py's exceptions inside the block as meshbus errors (``from`` the original)."""
