"""A listener's receive buffer (``rcvbuf``): set on its listening socket, so each connection it
accepts has it; 0 leaves the system's autotuning. Real sockets, read back from the kernel."""

from __future__ import annotations

import socket

import pytest

import meshbus
from meshbus.channels.direct.config import DEFAULT_RCVBUF
from meshbus.errors import InvalidURL


async def accepted_rcvbuf(query: str) -> tuple[int, int]:
    """SO_RCVBUF of a listener's listening socket and of a connection it accepted."""
    bus = meshbus.connect("memory://unused", listen=f"tcp://127.0.0.1:0?{query}")
    async with bus:
        listener = bus._listener
        assert listener is not None
        async with (
            bus.subscribe("a.>", group="g"),
            meshbus.connect(f"tcp://127.0.0.1:{listener.port}") as client,
        ):
            await client.publish("a.b", b"x")
            (served,) = listener._served  # type: ignore[attr-defined]
            sock = served.conn.transport.get_extra_info("socket")
            (listening,) = listener._server.sockets  # type: ignore[attr-defined]
            return (
                listening.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
                sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
            )


def system_default() -> int:
    with socket.socket() as fresh:
        return fresh.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)


@pytest.mark.asyncio
async def test_connections_get_the_listeners_receive_buffer() -> None:
    # The kernel reports twice what was set (the rest is its bookkeeping), on Linux.
    listening, accepted = await accepted_rcvbuf("")
    assert listening == accepted
    assert accepted in (DEFAULT_RCVBUF, 2 * DEFAULT_RCVBUF)
    listening, accepted = await accepted_rcvbuf("rcvbuf=262144")
    assert accepted in (262144, 2 * 262144)


@pytest.mark.asyncio
async def test_zero_leaves_the_systems_own() -> None:
    listening, _ = await accepted_rcvbuf("rcvbuf=0")
    assert listening == system_default()


@pytest.mark.parametrize("url", ["tcp://127.0.0.1:0?rcvbuf=-1", "tcp://127.0.0.1:0?rcvbuf=big"])
def test_a_bad_rcvbuf_is_a_clear_error(url: str) -> None:
    with pytest.raises(InvalidURL, match="rcvbuf"):
        meshbus.connect("memory://unused", listen=url)


def test_rcvbuf_is_for_listen_addresses_only() -> None:
    with pytest.raises(InvalidURL, match="rcvbuf"):
        meshbus.connect("tcp://127.0.0.1:7000?rcvbuf=65536")
