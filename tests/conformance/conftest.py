"""Real-broker fixtures for the conformance tests of broker channels.

pytest only accepts ``pytest_plugins`` in the rootdir conftest, so the fixtures of
``meshbus.testing.pytest_plugin`` are imported here instead.
"""

from meshbus.testing.pytest_plugin import (
    kafka_broker,
    kafka_broker_factory,
    nats_server,
    nats_server_factory,
    rabbitmq_server,
    rabbitmq_server_factory,
)

__all__ = [
    "kafka_broker",
    "kafka_broker_factory",
    "nats_server",
    "nats_server_factory",
    "rabbitmq_server",
    "rabbitmq_server_factory",
]
