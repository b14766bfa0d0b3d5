"""The amqp:// channel against the whole contract, on a real RabbitMQ node."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest

import meshbus
from meshbus.bus import Bus
from meshbus.testing import ChannelHarness, ConformanceSuite
from meshbus.testing.brokers import RabbitMQServer
from meshbus.testing.proxy import TcpProxy

pytest.importorskip("meshbus_rabbitmq", reason="pip install -e adapters/rabbitmq")


class RabbitHarness(ChannelHarness):
    """Buses on the session's RabbitMQ node, through a loopback TCP proxy; an outage blocks the
    proxy (every connection cut, new ones refused) and unblocks it on leaving the block."""

    def __init__(self, server: RabbitMQServer) -> None:
        self.server = server
        self.proxy: TcpProxy | None = None

    async def connect(self) -> Bus:
        if self.proxy is None:
            self.proxy = await TcpProxy("127.0.0.1", self.server.port).start()
        url = f"amqp://guest:guest@127.0.0.1:{self.proxy.port}/?reconnect_wait=0.2"
        return await meshbus.connect(url)

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
            await self.proxy.close()
            self.proxy = None


class TestRabbitMQConformance(ConformanceSuite):
    """amqp:// declares durable, ordered_by_key, no_responders and reconnects."""

    @pytest.fixture
    def harness(self, rabbitmq_server: RabbitMQServer) -> RabbitHarness:
        return RabbitHarness(rabbitmq_server)
