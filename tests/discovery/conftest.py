"""Fixtures: a live DNS server (:class:`FakeDns`) and raw UDP servers that answer garbage."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest_asyncio

from meshbus.discovery import Nameserver
from meshbus.testing.dns import FakeDns, RawHandler, running_dns


@pytest_asyncio.fixture
async def dns() -> AsyncIterator[FakeDns]:
    """A DNS server on 127.0.0.1 (UDP and TCP), stopped after the test."""
    async with running_dns() as server:
        yield server


@pytest_asyncio.fixture
async def raw_dns() -> AsyncIterator[Callable[[RawHandler], Awaitable[Nameserver]]]:
    """Start raw UDP servers on 127.0.0.1 that answer each datagram with what a handler
    returns (garbage, cut packets, wrong ids); returns a function that starts one."""
    loop = asyncio.get_running_loop()
    transports: list[asyncio.DatagramTransport] = []

    class Raw(asyncio.DatagramProtocol):
        def __init__(self, handler: RawHandler) -> None:
            self.handler = handler
            self.transport: asyncio.DatagramTransport | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport  # type: ignore[assignment]

        def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
            assert self.transport is not None
            for packet in self.handler(data):
                self.transport.sendto(packet, addr)

    async def start(handler: RawHandler) -> Nameserver:
        transport, _ = await loop.create_datagram_endpoint(
            lambda: Raw(handler), local_addr=("127.0.0.1", 0)
        )
        transports.append(transport)
        return Nameserver("127.0.0.1", transport.get_extra_info("sockname")[1])

    try:
        yield start
    finally:
        for transport in transports:
            transport.close()
