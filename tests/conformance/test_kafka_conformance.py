"""The kafka:// channel against the whole contract, on a real Kafka-protocol broker (Tansu).

Tansu runs with memory storage and without idempotent producers (``idempotence=false``);
consumer-group timings are shortened so that its first JoinGroup (held for about half the
session timeout) stays short. The reconnect test cuts every connection through a proxy.
"""

from __future__ import annotations

import pytest

from meshbus.testing import ConformanceSuite, ProxiedHarness
from meshbus.testing.brokers import TansuBroker, free_port
from meshbus.testing.proxy import TcpProxy

pytest.importorskip("meshbus_kafka", reason="pip install -e adapters/kafka")

TEST_OPTIONS = {
    "idempotence": False,
    "session_timeout_ms": 1000,
    "heartbeat_interval_ms": 100,
    "rebalance_grace": 0.5,
}
"""What the tests run with: Tansu has no idempotent producer; short group timings."""


def kafka_harness(broker: TansuBroker, proxy: TcpProxy | None = None) -> ProxiedHarness:
    """Buses on a Tansu broker. For the reconnect test the broker is private and advertises
    the proxy's port, so every connection goes through the proxy the outage cuts. The broker
    keeps running, so it keeps its data: a broker restart, which loses Tansu's memory
    storage, is tested in ``tests/kafka``."""
    url = broker.url if proxy is None else f"kafka://127.0.0.1:{proxy.port}"
    return ProxiedHarness(url, proxy, options={"kafka": TEST_OPTIONS})


class TestKafkaConformance(ConformanceSuite):
    """kafka:// declares durable, ordered_by_key and reconnects."""

    @pytest.fixture
    def harness(self, request: pytest.FixtureRequest) -> ProxiedHarness:
        if "reconnect" not in request.node.name:
            return kafka_harness(request.getfixturevalue("kafka_broker"))
        port = free_port()
        broker = request.getfixturevalue("kafka_broker_factory")(advertised_port=port)
        return kafka_harness(broker, TcpProxy("127.0.0.1", broker.port, port=port))
