"""The kafka:// channel against the whole contract, on a real Kafka-protocol broker (Tansu).

Tansu runs with memory storage and without idempotent producers (``idempotence=false``);
consumer-group timings are shortened so that its first JoinGroup (held for about half the
session timeout) stays short. ``reconnects`` is not declared (see the README), so the shared
reconnect test is skipped and no outage is needed.
"""

from __future__ import annotations

import pytest

from meshbus.testing import ConformanceSuite, UrlHarness
from meshbus.testing.brokers import TansuBroker

pytest.importorskip("meshbus_kafka", reason="pip install -e adapters/kafka")

TEST_OPTIONS = {
    "idempotence": False,
    "session_timeout_ms": 1000,
    "heartbeat_interval_ms": 100,
    "rebalance_grace": 0.5,
}
"""What the tests run with: Tansu has no idempotent producer; short group timings."""


class TestKafkaConformance(ConformanceSuite):
    """kafka:// declares durable and ordered_by_key."""

    @pytest.fixture
    def harness(self, kafka_broker: TansuBroker) -> UrlHarness:
        return UrlHarness(kafka_broker.url, options={"kafka": TEST_OPTIONS})
