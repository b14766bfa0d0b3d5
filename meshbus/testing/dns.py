"""A real DNS server on loopback whose answers a test changes live, for testing discovery and
``dns://`` without Docker: ``async with running_dns() as dns: dns.set("svc", "127.0.0.2")``.

Built on dnslib (packets; ``pip install 'meshbus[testing]'``) and asyncio (sockets), on a free
UDP port of 127.0.0.1 with a TCP listener on the same port for truncated answers. Nothing here
talks to any other nameserver.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from dnslib import AAAA, QTYPE, RCODE, RR, A, DNSRecord

from meshbus.discovery import Nameserver


@dataclass
class FakeDns:
    """The server's state. ``records`` maps a name to its addresses (IPv4 and IPv6 mixed); a
    name absent from it is NXDOMAIN, a name mapped to ``[]`` has no records. ``mode`` is
    ``answer``, ``servfail``, ``refused``, ``silent`` (no reply), ``garbage``, ``wrong_id`` or
    ``short`` (a reply cut after a few bytes). Names in ``truncate`` get TC over UDP."""

    nameserver: Nameserver = field(default_factory=lambda: Nameserver("127.0.0.1", 0))
    records: dict[str, list[str]] = field(default_factory=dict)
    mode: str = "answer"
    truncate: set[str] = field(default_factory=set)
    queries: list[tuple[str, str, str]] = field(default_factory=list)  # (proto, name, type)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def set(self, name: str, *addresses: str) -> None:
        """Make ``name`` answer with ``addresses`` from now on."""
        self.records[name] = list(addresses)

    def count(self, name: str) -> int:
        """How many queries (any type, any protocol) asked for ``name``."""
        return sum(1 for _, qname, _ in self.queries if qname == name)

    async def wait_queries(self, name: str, count: int, timeout: float = 10.0) -> None:
        """Wait until ``name`` was asked at least ``count`` times."""
        async with asyncio.timeout(timeout):
            while self.count(name) < count:
                self._changed.clear()
                await self._changed.wait()

    def reply(self, data: bytes, proto: str) -> bytes | None:
        """The answer to one query (``None``: stay silent), as the current mode says."""
        request = DNSRecord.parse(data)
        qname = str(request.q.qname).rstrip(".").lower()
        qtype = QTYPE[request.q.qtype]
        self.queries.append((proto, qname, qtype))
        self._changed.set()
        if self.mode == "silent":
            return None
        if self.mode == "garbage":
            return b"\x00\x01garbage that is not DNS at all"
        reply = request.reply()
        if self.mode == "wrong_id":
            reply.header.id = (request.header.id + 1) % 0x10000
        if self.mode in ("servfail", "refused"):
            reply.header.rcode = RCODE.SERVFAIL if self.mode == "servfail" else RCODE.REFUSED
            return bytes(reply.pack())
        if qname not in self.records:
            reply.header.rcode = RCODE.NXDOMAIN
            return bytes(reply.pack())
        if proto == "udp" and qname in self.truncate:
            reply.header.tc = 1
            return bytes(reply.pack())
        for address in self.records[qname]:
            version = ipaddress.ip_address(address).version
            if qtype == "A" and version == 4:
                reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(address), ttl=600))
            if qtype == "AAAA" and version == 6:
                reply.add_answer(RR(request.q.qname, QTYPE.AAAA, rdata=AAAA(address), ttl=600))
        packed: bytes = reply.pack()
        if self.mode == "short":
            return packed[:20]
        return packed


class UdpServer(asyncio.DatagramProtocol):
    """Answers DNS over UDP from a :class:`FakeDns`."""

    def __init__(self, dns: FakeDns) -> None:
        self.dns = dns
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        answer = self.dns.reply(data, "udp")
        if answer is not None and self.transport is not None:
            self.transport.sendto(answer, addr)


async def serve_tcp(
    dns: FakeDns, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Answers DNS over TCP (length-prefixed) from a :class:`FakeDns`."""
    try:
        while True:
            size = int.from_bytes(await reader.readexactly(2), "big")
            answer = dns.reply(await reader.readexactly(size), "tcp")
            if answer is not None:
                writer.write(len(answer).to_bytes(2, "big") + answer)
                await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port: int = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port


RawHandler = Callable[[bytes], list[bytes]]


@contextlib.asynccontextmanager
async def running_dns() -> AsyncIterator[FakeDns]:
    """A DNS server on 127.0.0.1 (UDP and TCP) for the duration of the block."""
    server = FakeDns()
    loop = asyncio.get_running_loop()
    port = free_port()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: UdpServer(server), local_addr=("127.0.0.1", port)
    )
    tcp = await asyncio.start_server(lambda r, w: serve_tcp(server, r, w), "127.0.0.1", port)
    server.nameserver = Nameserver("127.0.0.1", port)
    try:
        yield server
    finally:
        transport.close()
        tcp.close()
        await tcp.wait_closed()
