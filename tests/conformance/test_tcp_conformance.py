"""tcp:// against the whole contract: each bus listens on its own port and dials every bus of
the test (itself included) through a loopback proxy that the outage test cuts."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from pathlib import Path

import pytest

import meshbus
from meshbus.bus import Bus
from meshbus.channels.direct import TcpTransport
from meshbus.testing import ChannelHarness, ConformanceSuite
from meshbus.testing.proxy import TcpProxy, blocked

BUSES_PER_TEST = 4  # the suite makes one bus to read capabilities, tests up to three more
OPTIONS = "reconnect_min=0.02&reconnect_max=0.2&connect_timeout=10&heartbeat=2"


def free_port() -> int:
    """A free port below the ephemeral range, so that no outgoing connection takes it between
    now and the listener binding it."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    while True:
        port = random.randrange(10_000, low)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


class TcpHarness(ChannelHarness):
    """Up to four buses that all reach each other over tcp://."""

    def __init__(self) -> None:
        self.ports = [free_port() for _ in range(BUSES_PER_TEST)]
        self.proxies = [TcpProxy("127.0.0.1", port) for port in self.ports]
        self.buses: list[Bus] = []

    async def connect(self) -> Bus:
        if not self.buses:
            for proxy in self.proxies:
                await proxy.start()
        index = len(self.buses)
        assert index < BUSES_PER_TEST, "the tcp harness makes at most four buses a test"
        peers = ",".join(f"127.0.0.1:{proxy.port}" for proxy in self.proxies)
        bus = await meshbus.connect(
            f"tcp://{peers}?{OPTIONS}", listen=f"tcp://127.0.0.1:{self.ports[index]}"
        )
        self.buses.append(bus)
        await self.settled()
        return bus

    async def settled(self) -> None:
        """Wait until every open bus is connected to every open bus's listener."""
        async with asyncio.timeout(20):
            while True:
                live = {i for i, b in enumerate(self.buses) if not b.closed}
                waiting = [
                    peer.ready.wait()
                    for i in live
                    for peer in _dialer(self.buses[i]).peers
                    if self.proxies.index(_proxy_of(self.proxies, peer.port)) in live
                    and not peer.ready.is_set()
                ]
                if not waiting:
                    return
                await asyncio.gather(*waiting)

    def outage(self) -> contextlib.AbstractAsyncContextManager[None]:
        return blocked(self.proxies)

    async def aclose(self) -> None:
        for proxy in self.proxies:
            await proxy.close()


def _dialer(bus: Bus) -> TcpTransport:
    (transport,) = bus._transports.values()
    assert isinstance(transport, TcpTransport)
    return transport


def _proxy_of(proxies: list[TcpProxy], port: int) -> TcpProxy:
    return next(p for p in proxies if p.port == port)


class TestTcpConformance(ConformanceSuite):
    """tcp:// declares ordered_by_key, no_responders and reconnects; it is not durable."""

    @pytest.fixture
    def harness(self) -> TcpHarness:
        return TcpHarness()
