"""dns:// against the whole contract: a live test DNS server answers for the service name with
one loopback address per bus (127.0.0.2, 127.0.0.3, ...), all on one port as containers would
be; each address is a proxy in front of that bus's listener, which the outage test cuts."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from test_tcp_conformance import free_port

import meshbus
from meshbus.bus import Bus
from meshbus.channels.direct import DnsTransport
from meshbus.testing import ChannelHarness, ConformanceSuite
from meshbus.testing.dns import FakeDns, running_dns
from meshbus.testing.proxy import TcpProxy, blocked

NAME = "pricing.meshbus.test"
OPTIONS = "interval=0.3&min_refresh=0.1&reconnect_min=0.02&reconnect_max=0.2&heartbeat=2"


class DnsHarness(ChannelHarness):
    """Buses that find each other as the replicas of one DNS name."""

    def __init__(self) -> None:
        self.port = free_port()
        self.buses: list[Bus] = []
        self.proxies: list[TcpProxy] = []
        self._stack = contextlib.AsyncExitStack()
        self.dns: FakeDns | None = None

    def address(self, index: int) -> str:
        return f"127.0.0.{2 + index}"

    async def connect(self) -> Bus:
        if self.dns is None:
            self.dns = await self._stack.enter_async_context(running_dns())
        index = len(self.buses)
        listen_port = free_port()
        proxy = TcpProxy("127.0.0.1", listen_port, host=self.address(index), port=self.port)
        await proxy.start()
        self.proxies.append(proxy)
        self.dns.set(NAME, *(self.address(i) for i in range(index + 1)))
        ns = f"{self.dns.nameserver.host}:{self.dns.nameserver.port}"
        bus = await meshbus.connect(
            f"dns://{NAME}:{self.port}?nameserver={ns}&{OPTIONS}",
            listen=f"tcp://127.0.0.1:{listen_port}",
        )
        self.buses.append(bus)
        await self.settled()
        return bus

    def _settled_now(self) -> bool:
        live = {self.address(i) for i, b in enumerate(self.buses) if not b.closed}
        for bus in self.buses:
            if bus.closed:
                continue
            dialer = _dialer(bus)
            if not live <= dialer.addresses:
                return False  # its watcher has not seen every replica yet
            if not all(p.ready.is_set() for p in dialer.peers if p.host in live):
                return False
        return True

    async def settled(self) -> None:
        """Wait until every open bus dials, and is connected to, every open bus's address."""
        async with asyncio.timeout(20):
            while not self._settled_now():
                changes = [
                    asyncio.ensure_future(_dialer(b)._changed()) for b in self.buses if not b.closed
                ]
                try:
                    # Looked at again every 0.2 s too: a change between making these waits and
                    # their first step (which reads the events to wait on) would be missed.
                    await asyncio.wait(changes, timeout=0.2, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for change in changes:
                        change.cancel()

    def outage(self) -> contextlib.AbstractAsyncContextManager[None]:
        return blocked(self.proxies)

    async def aclose(self) -> None:
        for proxy in self.proxies:
            await proxy.close()
        await self._stack.aclose()


def _dialer(bus: Bus) -> DnsTransport:
    (transport,) = bus._transports.values()
    assert isinstance(transport, DnsTransport)
    return transport


class TestDnsConformance(ConformanceSuite):
    """dns:// keeps what tcp:// keeps, across the replicas a name resolves to."""

    @pytest.fixture
    def harness(self) -> DnsHarness:
        return DnsHarness()
