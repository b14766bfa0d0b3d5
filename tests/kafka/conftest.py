"""Real Kafka-protocol brokers for the adapter tests (fixtures of
``meshbus.testing.pytest_plugin``)."""

import pytest

from meshbus.testing.pytest_plugin import kafka_broker, kafka_broker_factory

pytest.importorskip("meshbus_kafka", reason="pip install -e adapters/kafka")

__all__ = ["kafka_broker", "kafka_broker_factory"]
