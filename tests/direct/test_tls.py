"""tcp:// over TLS (an ``ssl.SSLContext`` in the options): publish, a large message, and a
request/reply, with a certificate made for the test by the openssl command (the
``certificate`` fixture of tests/conftest.py)."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest

import meshbus

pytestmark = pytest.mark.asyncio


async def test_publish_and_request_over_tls(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert, key)
    client_side = ssl.create_default_context(cafile=str(cert))
    server = meshbus.connect(
        "memory://tls", listen="tcp://127.0.0.1:0", options={"tcp": {"ssl": server_side}}
    )
    async with server, server.subscribe("secure.>", group="g") as sub:
        port = server._listener.port  # type: ignore[union-attr]
        client = meshbus.connect(f"tcp://127.0.0.1:{port}", options={"tcp": {"ssl": client_side}})
        async with client:
            big = b"z" * (1 << 20)
            await client.publish_many([("secure.small", b"hello"), ("secure.big", big)])
            got = []
            async for msg in sub:
                got.append(msg.data)
                await msg.ack()
                if len(got) == 2:
                    break
            assert got == [b"hello", big]

            async def answer() -> None:
                async for msg in sub:
                    await msg.respond(msg.data.upper())
                    return

            responder = asyncio.create_task(answer())
            reply = await client.request("secure.ask", b"ping", timeout=5)
            await responder
            assert reply.data == b"PING"
        # Without TLS the listener does not talk to it at all.
        with pytest.raises(meshbus.errors.ConnectFailed):
            async with meshbus.connect(f"tcp://127.0.0.1:{port}?connect_timeout=1"):
                pass
