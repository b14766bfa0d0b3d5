"""dns:// across replicas that are separate OS processes, found through a real DNS server whose
answers the tests change: 127.0.0.2, 127.0.0.3, ... play the containers, all on one port."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import meshbus
from meshbus.channels.direct import DnsTransport
from meshbus.testing.dns import FakeDns, running_dns

pytestmark = pytest.mark.asyncio

NAME = "workers.meshbus.test"
REPLICA = Path(__file__).with_name("replica.py")
INTERVAL = 0.5


def free_port() -> int:
    sys.path.insert(0, str(Path(__file__).parents[1] / "conformance"))
    from test_tcp_conformance import free_port as below_ephemeral

    return below_ephemeral()


class Replica:
    """One replica process and the message numbers it handled."""

    def __init__(self, address: str, port: int, delay: float = 0.0) -> None:
        self.address = address
        self.port = port
        self.delay = delay
        self.handled: list[int] = []
        self.process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()
        self.closed = asyncio.Event()

    async def start(self) -> Replica:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, str(REPLICA), f"tcp://{self.address}:{self.port}", str(self.delay),
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        self._reader = asyncio.create_task(self._read())
        async with asyncio.timeout(20):
            await self.ready.wait()
        return self

    async def _read(self) -> None:
        assert self.process is not None
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            event = json.loads(line)
            if "n" in event:
                self.handled.append(event["n"])
            elif "ready" in event:
                self.ready.set()
            elif "closed" in event:
                self.closed.set()

    def signal(self, signum: int) -> None:
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signum)

    async def stop(self) -> None:
        self.signal(signal.SIGTERM)
        assert self.process is not None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(30):
                await self.process.wait()
        self.signal(signal.SIGKILL)
        await self.process.wait()
        if self._reader is not None:
            await self._reader


@contextlib.asynccontextmanager
async def cluster(count: int, delay: float = 0.0) -> AsyncIterator[tuple[FakeDns, list[Replica]]]:
    async with running_dns() as dns:
        port = free_port()
        replicas = [await Replica(f"127.0.0.{2 + i}", port, delay).start() for i in range(count)]
        dns.set(NAME, *(r.address for r in replicas))
        try:
            yield dns, replicas
        finally:
            for replica in replicas:
                await replica.stop()


def publisher(dns: FakeDns, port: int) -> meshbus.Bus:
    ns = f"{dns.nameserver.host}:{dns.nameserver.port}"
    return meshbus.connect(
        f"dns://{NAME}:{port}?nameserver={ns}&interval={INTERVAL}&min_refresh=0.2"
        "&reconnect_min=0.05&reconnect_max=0.5&heartbeat=1"
    )


def dialer(bus: meshbus.Bus) -> DnsTransport:
    (transport,) = bus._transports.values()
    assert isinstance(transport, DnsTransport)
    return transport


def connected(bus: meshbus.Bus, count: int) -> bool:
    """The dialler has ``count`` replicas, each connected with its interests known."""
    peers = dialer(bus).peers
    return len(peers) == count and all(p.ready.is_set() and p.interests for p in peers)


async def until(condition: object, within: float = 20.0) -> None:
    """Wait for ``condition()`` to hold (a bound, not a speed assertion)."""
    async with asyncio.timeout(within):
        # The conditions span other processes' output and the dialler's state: poll, bounded.
        while not condition():  # type: ignore[operator]  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def test_three_replicas_share_a_group_and_a_fourth_joins() -> None:
    async with cluster(3) as (dns, replicas), publisher(dns, replicas[0].port) as bus:
        await until(lambda: connected(bus, 3))
        await bus.publish_many([("jobs.resize", n) for n in range(300)])
        await until(lambda: sum(len(r.handled) for r in replicas) == 300)
        every = Counter(n for r in replicas for n in r.handled)
        assert sorted(every) == list(range(300))
        assert set(every.values()) == {1}, "a message was handled twice"
        assert all(r.handled for r in replicas), "a replica got no share"

        fourth = await Replica("127.0.0.5", replicas[0].port).start()
        replicas.append(fourth)
        dns.set(NAME, *(r.address for r in replicas))
        await until(lambda: "127.0.0.5" in dialer(bus).addresses, within=4 * INTERVAL + 5)
        n = 300
        while not fourth.handled:  # it gets traffic once dialled and connected
            await bus.publish("jobs.resize", n)
            n += 1
            await asyncio.sleep(0.01)
        await until(lambda: sum(len(r.handled) for r in replicas) == n)


async def test_a_replica_leaving_is_drained_and_loses_nothing() -> None:
    async with cluster(3, delay=0.002) as (dns, replicas), publisher(dns, replicas[0].port) as bus:
        await until(lambda: connected(bus, 3))
        leaving = replicas[1]
        sent = 0
        for n in range(200):
            await bus.publish("jobs.resize", n)
            sent += 1
        dns.set(NAME, replicas[0].address, replicas[2].address)  # scaled down
        stopping = asyncio.create_task(leaving.stop())  # SIGTERM: the replica drains
        for n in range(200, 600):
            await bus.publish("jobs.resize", n)
            sent += 1
        await stopping
        await until(lambda: sum(len(r.handled) for r in replicas) == sent)
        every = Counter(n for r in replicas for n in r.handled)
        assert sorted(every) == list(range(sent)), "an accepted message was lost"
        assert set(every.values()) == {1}
        assert leaving.closed.is_set()
        await until(lambda: leaving.address not in dialer(bus).addresses, within=10 * INTERVAL + 5)


async def test_servfail_and_silence_keep_the_replicas() -> None:
    async with cluster(2) as (dns, replicas), publisher(dns, replicas[0].port) as bus:
        await until(lambda: connected(bus, 2))
        for mode in ("servfail", "silent", "garbage"):
            dns.mode = mode
            before = dns.count(NAME)
            await dns.wait_queries(NAME, before + 2)  # two failed refreshes
            assert dialer(bus).addresses == {r.address for r in replicas}, mode
            await bus.publish_many([("jobs.resize", n) for n in range(20)])
        dns.mode = "answer"
        await until(lambda: sum(len(r.handled) for r in replicas) == 60)


async def test_a_replica_killed_mid_stream() -> None:
    async with cluster(3, delay=0.001) as (dns, replicas), publisher(dns, replicas[0].port) as bus:
        await until(lambda: connected(bus, 3))
        victim = replicas[2]
        killed_at = None
        for n in range(600):
            if n == 200:
                victim.signal(signal.SIGKILL)
                killed_at = n
            await bus.publish("jobs.resize", n, timeout=30)  # never fails: others take it
        assert killed_at is not None
        survivors = replicas[:2]
        credit = 1024
        await until(lambda: sum(len(r.handled) for r in survivors) >= 400)
        handled = Counter(n for r in replicas for n in r.handled)
        after_kill = [n for n in range(600) if n >= killed_at + credit or n not in handled]
        # Whatever the victim had not accepted went to the others; only what it accepted and
        # had not handled yet died with it (the direct channels are not durable).
        lost = [n for n in range(600) if n not in handled]
        assert all(n not in handled for n in lost)
        assert len(lost) <= credit
        assert not [n for n in after_kill if n >= killed_at + credit and n not in handled]
        assert set(handled.values()) == {1}
