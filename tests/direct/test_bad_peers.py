"""Hostile or broken peers against a real listener: each is cut off with a logged reason while
the listener goes on serving everyone else."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import AsyncIterator

import pytest

import meshbus
from meshbus.channels.direct.connection import Wire
from meshbus.channels.direct.frames import (
    DEFAULT_MAX_FRAME,
    FrameDecoder,
    FrameType,
    Hello,
    Pub,
    encode,
    encode_one,
)
from meshbus.channels.direct.listener import DirectListener
from meshbus.errors import ConnectFailed
from meshbus.transport import Envelope

pytestmark = pytest.mark.asyncio


@contextlib.asynccontextmanager
async def serving(token: str | None = None) -> AsyncIterator[tuple[meshbus.Bus, int]]:
    """A bus listening on a free loopback port (with a subscription), and that port."""
    query = "hello_timeout=0.5" + (f"&token={token}" if token else "")
    bus = meshbus.connect("memory://unused", listen=f"tcp://127.0.0.1:0?{query}")
    async with bus:
        port = bus._listener.port  # type: ignore[union-attr]
        async with bus.subscribe("orders.>", group="g") as sub:
            yield bus, port
            del sub


async def cut_off(port: int, payload: bytes) -> bytes:
    """Send ``payload`` on a raw connection; return what came back before the listener closed
    it (raises TimeoutError if it never does)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        await writer.drain()
        async with asyncio.timeout(5):
            return await reader.read()  # until EOF: the listener closed the connection
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def still_serves(port: int, token: str | None = None) -> None:
    """A well-behaved peer can still publish to the listener and get an answer."""
    query = "connect_timeout=5" + (f"&token={token}" if token else "")
    async with meshbus.connect(f"tcp://127.0.0.1:{port}?{query}") as client:
        with pytest.raises(meshbus.NoResponders):
            await client.request("nobody.here", b"?", timeout=5)
        await client.publish("orders.new", b"fine")


def hello(**changes: object) -> bytes:
    fields: dict[str, object] = {"node": "test", "max_frame": 1 << 20, "credit": 0}
    fields.update(changes)
    return b"".join(encode(Hello(**fields)))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("what", "payload", "logged"),
    [
        ("not meshbus at all", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "frame length"),
        ("an oversized length prefix", struct.pack(">IB", 2**31, 1), "frame length"),
        ("a zero length prefix", struct.pack(">IB", 0, 1), "frame length"),
        ("a wrong magic", struct.pack(">IB", 9, 1) + b"HTTP/1.1", "MBUS magic"),
        ("a newer protocol version", struct.pack(">IB", 6, 1) + b"MBUS\x09", "version 9"),
        ("a malformed hello", struct.pack(">IB", 8, 1) + b"MBUS\x02{]", "malformed hello"),
        (
            "a frame before the hello",
            b"".join(encode(Pub(seq=1, subject="a", data=b""))),
            "before its hello",
        ),
    ],
)
async def test_a_bad_first_frame_is_cut_off(
    caplog: pytest.LogCaptureFixture, what: str, payload: bytes, logged: str
) -> None:
    async with serving() as (_, port):
        with caplog.at_level(logging.WARNING, logger="meshbus.direct"):
            answer = await cut_off(port, payload)
        assert answer == b"", f"{what}: the listener said something to an unknown peer"
        assert logged in caplog.text, what
        await still_serves(port)


async def test_a_peer_that_says_nothing_is_cut_off(caplog: pytest.LogCaptureFixture) -> None:
    async with serving() as (_, port):
        with caplog.at_level(logging.WARNING, logger="meshbus.direct"):
            assert await cut_off(port, b"") == b""
        assert "said nothing within 0.5 s" in caplog.text
        await still_serves(port)


async def test_a_port_probe_is_not_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    """A healthcheck or ``meshbus doctor`` connects and closes without a byte: that is logged
    at debug level, not as a refused peer, so a healthcheck every few seconds is no noise."""
    logged = asyncio.Event()

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "closed without a word" in record.getMessage():
                logged.set()

    watch = Watch()
    logging.getLogger("meshbus.direct").addHandler(watch)
    try:
        async with serving() as (_, port):
            with caplog.at_level(logging.DEBUG, logger="meshbus.direct"):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                await writer.wait_closed()
                async with asyncio.timeout(5):
                    await logged.wait()
            assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
            await still_serves(port)
    finally:
        logging.getLogger("meshbus.direct").removeHandler(watch)


async def test_a_malformed_frame_after_the_hello_is_cut_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with serving() as (_, port):
        with caplog.at_level(logging.WARNING, logger="meshbus.direct"):
            await cut_off(port, hello() + struct.pack(">IB", 3, 4) + b"\0\0")
        assert "PUB frame is truncated" in caplog.text
        await still_serves(port)


async def test_a_wrong_token_learns_nothing(caplog: pytest.LogCaptureFixture) -> None:
    async with serving(token="s3cret") as (_, port):
        with caplog.at_level(logging.WARNING, logger="meshbus.direct"):
            answer = await cut_off(port, hello(token="guess"))
        assert b"authentication failed" in answer
        assert b"orders" not in answer  # no interests
        assert b"s3cret" not in answer  # and no token
        assert "wrong or missing token" in caplog.text
        with pytest.raises(ConnectFailed, match="authentication failed"):
            async with meshbus.connect(f"tcp://127.0.0.1:{port}?connect_timeout=1&token=guess"):
                pass
        await still_serves(port, token="s3cret")


async def test_no_listener_is_a_clear_connect_error() -> None:
    async with serving() as (_, port):
        pass  # the port is free again
    with pytest.raises(ConnectFailed, match=r"no tcp:// peer answered within 0\.5 s"):
        async with meshbus.connect(f"tcp://127.0.0.1:{port}?connect_timeout=0.5"):
            pass


async def test_subscribing_over_tcp_without_a_listen_address() -> None:
    async with serving() as (_, port), meshbus.connect(f"tcp://127.0.0.1:{port}") as client:
        subscription = client.subscribe("orders.new")
        with pytest.raises(meshbus.ConfigurationError, match="give this bus one"):
            await subscription.start()


async def test_a_connection_accepted_as_the_listener_closes_is_closed_with_it() -> None:
    # Accepted, its handler queued but not yet run, when close() cancels it: the socket is
    # closed with the listener, not left to the garbage collector (an unclosed-transport
    # warning that failed a later test now and then).
    listener = DirectListener("tcp://127.0.0.1:0")
    await listener.start()
    ours, theirs = socket.socketpair()
    with theirs:
        transport, wire = await asyncio.get_running_loop().connect_accepted_socket(
            lambda: Wire(DEFAULT_MAX_FRAME), ours
        )
        listener._accepted(wire)  # as the server does on accepting it
        await listener.close(1)
        assert transport.is_closing()


async def said_hello(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, int]:
    """A raw connection past the hello exchange, and the id of the listener's interest in
    ``orders.>`` (group ``g``)."""
    reader, writer, interest = await said_hello_to(port, "orders.>")
    assert interest is not None
    return reader, writer, interest


async def said_hello_to(
    port: int, pattern: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, int | None]:
    """A raw connection past the hello exchange, and the id of the listener's interest in
    ``pattern`` (None if it has none)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(hello())
    (length,) = struct.unpack(">I", await reader.readexactly(4))
    (theirs,) = FrameDecoder().feed(struct.pack(">I", length) + await reader.readexactly(length))
    assert isinstance(theirs, Hello)
    ids = [i.id for i in theirs.interests if i.pattern == pattern]
    return reader, writer, ids[0] if ids else None


async def test_a_bad_pub_frame_read_alone_is_cut_off(caplog: pytest.LogCaptureFixture) -> None:
    """A PUB frame that is all a read brings is read by the connection's fast path, which
    checks what the decoder checks: a message id that is not UTF-8 ends the connection."""
    async with serving() as (_, port):
        reader, writer, interest = await said_hello(port)
        good = encode_one(1, Envelope("orders.new", b"ok", {}, None, "id-1"), (interest,), False)
        writer.write(good)
        frame = await reader.readexactly(
            13
        )  # its ACCEPT: the next frame comes in a read of its own
        assert frame[4] == FrameType.ACCEPT
        bad = bytearray(
            encode_one(2, Envelope("orders.new", b"no", {}, None, "id-2"), (interest,), False)
        )
        bad[-4:-2] = b"\xff\xfe"  # the message id's first two bytes
        with caplog.at_level(logging.WARNING, logger="meshbus.direct"):
            writer.write(bytes(bad))
            async with asyncio.timeout(5):
                while await reader.read(1 << 16):
                    pass  # until the listener closes the connection
        writer.close()
        assert "PUB frame has text that is not UTF-8" in caplog.text
        await still_serves(port)


async def test_a_frame_the_listener_fails_on_ends_that_connection_only(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A handler that raises on a frame (here: the listener queueing a lone message) ends
    that connection with the error logged; the listener serves others."""
    async with serving() as (_, port):
        reader, writer, interest = await said_hello(port)

        def broken(*args: object) -> None:
            raise RuntimeError("queue broke")

        monkeypatch.setattr(DirectListener, "_take", broken)
        with caplog.at_level(logging.ERROR, logger="meshbus.direct"):
            writer.write(
                encode_one(1, Envelope("orders.new", b"x", {}, None, "id-1"), (interest,), False)
            )
            async with asyncio.timeout(5):
                while await reader.read(1 << 16):
                    pass
        writer.close()
        monkeypatch.undo()
        assert "a frame could not be handled" in caplog.text
        assert "queue broke" in caplog.text
        await still_serves(port)


async def test_a_peer_gone_silent_after_its_hello_is_pinged_then_cut_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A peer that says hello and then nothing (frozen, or its network gone) gets PINGs once
    a heartbeat passes without a word from it, and is cut off once more than three have; a
    peer that answers is kept."""
    beat = 0.1
    bus = meshbus.connect("memory://unused", listen=f"tcp://127.0.0.1:0?heartbeat={beat}")
    async with bus:
        port = bus._listener.port  # type: ignore[union-attr]
        reader, writer, _ = await said_hello_to(port, "other.>")
        pings = 0
        loop = asyncio.get_running_loop()
        started = loop.time()
        with caplog.at_level(logging.WARNING, logger="meshbus.direct"):
            async with asyncio.timeout(5):
                with contextlib.suppress(asyncio.IncompleteReadError):  # closed: the end
                    while True:
                        pings += (await reader.readexactly(13))[4] == FrameType.PING
        lasted = loop.time() - started
        writer.close()
        assert pings >= 1
        assert 3 * beat < lasted < 3 * beat + 2  # 3 to 4 beats, with room for a slow machine
        assert "silent for" in caplog.text
        async with meshbus.connect(f"tcp://127.0.0.1:{port}?heartbeat={beat}") as client:
            await asyncio.sleep(8 * beat)  # answering pings, it stays
            with pytest.raises(meshbus.NoResponders):
                await client.request("nobody.here", b"?", timeout=5)
