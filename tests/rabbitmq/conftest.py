"""Real RabbitMQ nodes for the adapter tests (fixtures of ``meshbus.testing.pytest_plugin``)."""

import pytest

from meshbus.testing.pytest_plugin import rabbitmq_server, rabbitmq_server_factory

pytest.importorskip("meshbus_rabbitmq", reason="pip install -e adapters/rabbitmq")

__all__ = ["rabbitmq_server", "rabbitmq_server_factory"]
