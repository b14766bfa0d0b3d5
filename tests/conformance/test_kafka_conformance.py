"""The kafka:// channel against the whole contract, on a real Kafka-protocol broker (Tansu).

Tansu runs with memory storage and without idempotent producers (``idempotence=false``);
consumer-group timings are shortened so that its first JoinGroup (held for about half the
session timeout) stays short. The reconnect test cuts every connection through a proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from meshbus.bus import Bus
from meshbus.testing import ConformanceSuite, UrlHarness
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


class KafkaHarness(UrlHarness):
    """Buses on a Tansu broker. For the reconnect test the broker is private and sits behind
    a loopback ``TcpProxy`` (it advertises the proxy's port, so every connection goes
    through it); an outage blocks the proxy (every connection cut, new ones refused) and
    unblocks it on leaving the block. The broker keeps running, so it keeps its data: a
    broker restart, which loses Tansu's memory storage, is tested in ``tests/kafka``."""

    def __init__(self, broker: TansuBroker, proxy: TcpProxy | None = None) -> None:
        url = broker.url if proxy is None else f"kafka://127.0.0.1:{proxy.port}"
        super().__init__(url, options={"kafka": TEST_OPTIONS})
        self.proxy = proxy

    async def connect(self) -> Bus:
        if self.proxy is not None:
            await self.proxy.start()
        return await super().connect()

    @contextlib.asynccontextmanager
    async def outage(self) -> AsyncIterator[None]:
        assert self.proxy is not None
        await self.proxy.block()
        try:
            yield
        finally:
            await self.proxy.unblock()

    async def aclose(self) -> None:
        if self.proxy is not None:
            await self.proxy.block()
            await asyncio.sleep(0.2)
            await self.proxy.close()


class TestKafkaConformance(ConformanceSuite):
    """kafka:// declares durable, ordered_by_key and reconnects."""

    @pytest.fixture
    def harness(self, request: pytest.FixtureRequest) -> KafkaHarness:
        if "reconnect" not in request.node.name:
            return KafkaHarness(request.getfixturevalue("kafka_broker"))
        port = free_port()
        broker = request.getfixturevalue("kafka_broker_factory")(advertised_port=port)
        return KafkaHarness(broker, TcpProxy("127.0.0.1", broker.port, port=port))
