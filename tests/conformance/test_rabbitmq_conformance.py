"""The amqp:// channel against the whole contract, on a real RabbitMQ node."""

from __future__ import annotations

import pytest

from meshbus.testing import ConformanceSuite, ProxiedHarness
from meshbus.testing.brokers import RabbitMQServer, free_port
from meshbus.testing.proxy import TcpProxy

pytest.importorskip("meshbus_rabbitmq", reason="pip install -e adapters/rabbitmq")


class TestRabbitMQConformance(ConformanceSuite):
    """amqp:// declares durable, ordered_by_key, no_responders and reconnects."""

    @pytest.fixture
    def harness(
        self, rabbitmq_server: RabbitMQServer, request: pytest.FixtureRequest
    ) -> ProxiedHarness:
        # Only the reconnect test needs the proxy it cuts; the others talk to the node.
        if "reconnect" not in request.node.name:
            return ProxiedHarness(rabbitmq_server.url)
        proxy = TcpProxy("127.0.0.1", rabbitmq_server.port, port=free_port())
        url = f"amqp://guest:guest@127.0.0.1:{proxy.port}/?reconnect_wait=0.2"
        return ProxiedHarness(url, proxy)
