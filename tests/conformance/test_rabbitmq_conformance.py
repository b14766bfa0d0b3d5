"""The amqp:// channel against the whole contract, on a real RabbitMQ node."""

from __future__ import annotations

import asyncio
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
    """Buses on the session's RabbitMQ node (through a loopback TCP proxy for the reconnect
    test); an outage blocks the
    proxy (every connection cut, new ones refused) and unblocks it on leaving the block."""

    def __init__(self, server: RabbitMQServer, proxied: bool) -> None:
        self.server = server
        self.proxied = proxied
        self.proxy: TcpProxy | None = None

    async def connect(self) -> Bus:
        if not self.proxied:
            return await meshbus.connect(self.server.url)
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
            # Cut first and let the pipes end by themselves, so every stream is closed.
            await self.proxy.block()
            await asyncio.sleep(0.2)
            await self.proxy.close()
            self.proxy = None


class TestRabbitMQConformance(ConformanceSuite):
    """amqp:// declares durable, ordered_by_key, no_responders and reconnects."""

    @pytest.fixture
    def harness(
        self, rabbitmq_server: RabbitMQServer, request: pytest.FixtureRequest
    ) -> RabbitHarness:
        # Only the reconnect test needs the proxy it cuts; the others talk to the node.
        return RabbitHarness(rabbitmq_server, proxied="reconnect" in request.node.name)
