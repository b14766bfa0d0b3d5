"""meshbus-kafka: the ``kafka://`` channel for meshbus, on aiokafka.

Subjects are topics (a reversible name mapping), groups are Kafka consumer groups with manual
commits, ``nack`` and ``reject`` go through retry and dead-letter topics, and request/reply
uses a reply topic per client. Installed, it registers itself under the entry-point group
``meshbus.transports`` as ``kafka``; ``meshbus.connect("kafka://host:9092")`` then uses it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meshbus_kafka._naming import group_id, pattern_regex, subject_of, topic_of
from meshbus_kafka._options import KafkaOptions
from meshbus_kafka._transport import KafkaTransport

__all__ = [
    "KafkaOptions",
    "KafkaTransport",
    "factory",
    "group_id",
    "pattern_regex",
    "subject_of",
    "topic_of",
]


def factory(url: str, options: Mapping[str, Any]) -> KafkaTransport:
    """Make the ``kafka://`` transport for ``url`` (the ``meshbus.transports`` entry point)."""
    return KafkaTransport(url, options)
