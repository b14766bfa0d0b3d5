"""The nats:// channel against the whole contract, on a real NATS server with JetStream."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from meshbus.testing import ConformanceSuite, UrlHarness
from meshbus.testing.brokers import NatsServer

pytest.importorskip("meshbus_nats", reason="pip install -e adapters/nats")


class NatsHarness(UrlHarness):
    """Buses on one NATS server; an outage kills the server and restarts it (same port,
    same JetStream store) on leaving the block."""

    def __init__(self, server: NatsServer) -> None:
        super().__init__(server.url)
        self.server = server

    @contextlib.asynccontextmanager
    async def outage(self) -> AsyncIterator[None]:
        await asyncio.to_thread(self.server.kill)
        await asyncio.sleep(0.5)  # let the clients see the connection drop
        try:
            yield
        finally:
            await asyncio.to_thread(self.server.start)


class TestNatsConformance(ConformanceSuite):
    """nats:// declares durable, ordered_by_key, no_responders and reconnects."""

    @pytest.fixture
    def harness(self, request: pytest.FixtureRequest) -> NatsHarness:
        if "reconnect" in request.node.name:
            # This test kills its server: give it a private one.
            server = request.getfixturevalue("nats_server_factory")()
        else:
            server = request.getfixturevalue("nats_server")
        return NatsHarness(server)
