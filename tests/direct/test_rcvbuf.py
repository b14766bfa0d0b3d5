"""A listener's receive buffer (``rcvbuf``): set on its listening socket, so each connection it
accepts has it; 0 leaves the system's autotuning. Real sockets, read back from the kernel."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

import meshbus
from meshbus.channels.direct import config
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


def rmem_max() -> int:
    with open("/proc/sys/net/core/rmem_max") as limit:
        return int(limit.read())


def granted(size: int) -> int:
    """What Linux reports for SO_RCVBUF set to ``size``: capped at ``net.core.rmem_max``, then
    doubled (the other half is its bookkeeping)."""
    return 2 * min(size, rmem_max())


def system_default() -> int:
    with socket.socket() as fresh:
        return fresh.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)


@pytest.mark.asyncio
async def test_connections_get_the_listeners_receive_buffer() -> None:
    listening, accepted = await accepted_rcvbuf("rcvbuf=65536")
    assert listening == accepted == granted(65536)


@pytest.mark.asyncio
async def test_the_default_where_the_system_grants_it() -> None:
    """1 MiB where net.core.rmem_max allows it; where it does not, autotuning rather than a
    capped buffer (which did worse than autotuning)."""
    listening, accepted = await accepted_rcvbuf("")
    assert listening == accepted
    if rmem_max() >= DEFAULT_RCVBUF:
        assert accepted == granted(DEFAULT_RCVBUF)
    else:
        assert listening == system_default()


def test_the_default_follows_rmem_max(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    limit = tmp_path / "rmem_max"
    monkeypatch.setattr(config, "_RMEM_MAX", str(limit))
    limit.write_text("212992\n")
    assert config.default_rcvbuf() == 0
    limit.write_text(f"{4 * DEFAULT_RCVBUF}\n")
    assert config.default_rcvbuf() == DEFAULT_RCVBUF
    limit.unlink()
    assert config.default_rcvbuf() == DEFAULT_RCVBUF  # no such limit to respect


@pytest.mark.asyncio
async def test_zero_leaves_the_systems_own() -> None:
    listening, _ = await accepted_rcvbuf("rcvbuf=0")
    assert listening == system_default()


@pytest.mark.parametrize(
    "url",
    [
        "tcp://127.0.0.1:0?rcvbuf=-1",
        "tcp://127.0.0.1:0?rcvbuf=big",
        f"tcp://127.0.0.1:0?rcvbuf={1 << 31}",  # more than the socket option holds
    ],
)
def test_a_bad_rcvbuf_is_a_clear_error(url: str) -> None:
    with pytest.raises(InvalidURL, match="rcvbuf"):
        meshbus.connect("memory://unused", listen=url)


def test_rcvbuf_is_for_listen_addresses_only() -> None:
    with pytest.raises(InvalidURL, match="rcvbuf"):
        meshbus.connect("tcp://127.0.0.1:7000?rcvbuf=65536")
