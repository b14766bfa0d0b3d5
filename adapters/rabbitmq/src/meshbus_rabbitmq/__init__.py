"""meshbus-rabbitmq: the ``amqp://`` and ``amqps://`` channel for meshbus, on aio-pika.

Subjects travel on one topic exchange; broadcast subscribers read exclusive auto-delete queues,
groups read durable quorum queues; requests travel on a second topic exchange into classic,
non-durable queues and are answered into one exclusive reply queue per connection. Installed, it
registers itself under the entry-point group ``meshbus.transports`` as ``amqp`` and ``amqps``;
``meshbus.connect("amqp://user:pass@host:5672/vhost")`` then uses it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meshbus_rabbitmq._naming import binding_key, group_queue
from meshbus_rabbitmq._options import RabbitOptions
from meshbus_rabbitmq._transport import RabbitTransport

__all__ = ["RabbitOptions", "RabbitTransport", "binding_key", "factory", "group_queue"]


def factory(url: str, options: Mapping[str, Any]) -> RabbitTransport:
    """Make the ``amqp://`` transport for ``url`` (the ``meshbus.transports`` entry point)."""
    return RabbitTransport(url, options)
