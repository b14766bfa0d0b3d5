"""One DNS question to one nameserver, over UDP (asyncio datagrams) with TCP when truncated.

Each query uses a fresh socket (so a random source port) and a random transaction id. A reply
from another address, with another id or for another question is ignored, as RFC 5452 asks, and
the query keeps waiting; a reply that matches but does not parse is a failed lookup.
"""

from __future__ import annotations

import asyncio
import secrets
import struct
from typing import Any, NamedTuple

from meshbus.discovery._wire import Response, build_query, parse_response
from meshbus.errors import LookupFailed, LookupTimeout, ProtocolError

__all__ = ["DNS_PORT", "Nameserver", "query"]

DNS_PORT = 53
_MAX_UDP = 65535


class Nameserver(NamedTuple):
    """A nameserver address: ``host`` (an IP literal) and ``port`` (53 by default)."""

    host: str
    port: int = DNS_PORT

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


class _Reply(asyncio.DatagramProtocol):
    """Waits for the first datagram that answers our question."""

    def __init__(self, ident: int, name: str, qtype: int) -> None:
        self.ident = ident
        self.name = name.rstrip(".").lower()
        self.qtype = qtype
        self.done: asyncio.Future[Response] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if self.done.done() or len(data) < 2:
            return
        if struct.unpack_from("!H", data)[0] != self.ident:
            return  # not ours (late, stray or spoofed): keep waiting
        try:
            response = parse_response(data)
        except ProtocolError as exc:
            self.done.set_exception(exc)
            return
        if response.qname != self.name or response.qtype != self.qtype:
            return
        self.done.set_result(response)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: nobody serves DNS there.
        if not self.done.done():
            self.done.set_exception(exc)


def _close_made(endpoint: asyncio.Future[tuple[asyncio.DatagramTransport, _Reply]]) -> None:
    if not endpoint.cancelled() and endpoint.exception() is None:
        endpoint.result()[0].close()


async def _udp(nameserver: Nameserver, name: str, qtype: int, timeout: float) -> Response:
    ident = secrets.randbelow(0x10000)
    packet = build_query(ident, name, qtype)
    loop = asyncio.get_running_loop()
    endpoint = asyncio.ensure_future(
        loop.create_datagram_endpoint(
            lambda: _Reply(ident, name, qtype), remote_addr=(nameserver.host, nameserver.port)
        )
    )
    try:
        transport, protocol = await asyncio.shield(endpoint)
    except asyncio.CancelledError:
        # Cancelled while the socket was being made: it is closed once made, not left open.
        endpoint.add_done_callback(_close_made)
        raise
    try:
        # Send, and once more halfway through the timeout: a lost datagram costs half the wait.
        for wait in (timeout / 2, timeout / 2):
            transport.sendto(packet)
            await asyncio.wait({protocol.done}, timeout=wait)
            if protocol.done.done():
                return protocol.done.result()
        raise TimeoutError
    finally:
        transport.close()
        if not protocol.done.done():
            protocol.done.cancel()


async def _tcp(nameserver: Nameserver, name: str, qtype: int, timeout: float) -> Response:
    ident = secrets.randbelow(0x10000)
    packet = build_query(ident, name, qtype)
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(nameserver.host, nameserver.port)
        try:
            writer.write(struct.pack("!H", len(packet)) + packet)
            await writer.drain()
            while True:
                (size,) = struct.unpack("!H", await reader.readexactly(2))
                response = parse_response(await reader.readexactly(size))
                if response.ident == ident and response.qtype == qtype:
                    return response
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass


async def query(nameserver: Nameserver, name: str, qtype: int, timeout: float) -> Response:
    """Ask ``nameserver`` for records of ``qtype`` at ``name``.

    Returns the parsed response whatever its RCODE (the caller decides what NXDOMAIN or
    SERVFAIL mean). A truncated UDP answer is asked again over TCP within the same timeout.
    Raises :class:`~meshbus.errors.LookupTimeout` when no matching reply comes in time and
    :class:`~meshbus.errors.LookupFailed` for a malformed reply or a network error.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    where = f"{name} (type {qtype}) at {nameserver}"
    try:
        response = await _udp(nameserver, name, qtype, timeout)
        if response.truncated:
            response = await _tcp(nameserver, name, qtype, max(deadline - loop.time(), 0.0))
            if response.truncated:
                raise LookupFailed(name, f"answer truncated even over TCP from {nameserver}")
    except TimeoutError as exc:
        raise LookupTimeout(name, f"no answer within {timeout:g} s for {where}") from exc
    except ProtocolError as exc:
        raise LookupFailed(name, f"malformed answer for {where}: {exc}") from exc
    except (OSError, asyncio.IncompleteReadError) as exc:
        raise LookupFailed(name, f"network error asking {where}: {exc!r}") from exc
    return response
