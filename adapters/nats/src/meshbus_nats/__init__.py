"""meshbus-nats: the ``nats://`` channel for meshbus.

Core NATS carries broadcast and request/reply; JetStream carries groups, so they are durable
and at-least-once. Installed, it registers itself under the entry-point group
``meshbus.transports`` as ``nats``; ``meshbus.connect("nats://host:4222")`` then uses it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meshbus_nats._naming import consumer_name
from meshbus_nats._options import NatsOptions
from meshbus_nats._transport import NatsTransport

__all__ = ["NatsOptions", "NatsTransport", "consumer_name", "factory"]


def factory(url: str, options: Mapping[str, Any]) -> NatsTransport:
    """Make the ``nats://`` transport for ``url`` (the ``meshbus.transports`` entry point)."""
    return NatsTransport(url, options)
