"""The reading side of a direct connection (``Wire``): bytes go into one reused buffer, frames
are cut where they lie, and a bigger buffer is made only for a frame whose length passed the
largest-frame check."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from meshbus.channels.direct.connection import Connection, ConnectionSettings, Wire
from meshbus.channels.direct.frames import (
    DEFAULT_MAX_FRAME,
    Accept,
    Frame,
    Hello,
    Pub,
    Pubs,
    encode,
    encode_pub_parts,
)
from meshbus.transport import Envelope

pytestmark = pytest.mark.asyncio


def deliver(wire: Wire, data: bytes, chunk: int) -> None:
    """Hand ``data`` to the wire the way the event loop does, ``chunk`` bytes at most per read."""
    at = 0
    while at < len(data):
        room = wire.get_buffer(-1)
        size = min(chunk, len(room), len(data) - at)
        room[:size] = data[at : at + size]
        room.release()
        wire.buffer_updated(size)
        at += size


async def test_frames_are_cut_across_reads_and_the_buffer_is_reused() -> None:
    wire = Wire(max_frame=1 << 20)
    got: list[Frame] = []
    wire.sink = got.extend
    messages = [Pub(seq=n, subject="a.b", data=b"x" * 100, targets=(1,)) for n in range(1, 2001)]
    stream = b"".join(
        b"".join(encode(Pubs((m,)))) + b"".join(encode(Accept(m.seq))) for m in messages
    )
    deliver(wire, stream, 1000)
    assert [f.messages[0] for f in got if isinstance(f, Pubs)] == messages
    assert [f.seq for f in got if isinstance(f, Accept)] == list(range(1, 2001))
    assert len(wire._buffer) == 256 * 1024  # never grew: every frame fit


async def test_a_frame_larger_than_the_buffer_gets_room_then_the_memory_back() -> None:
    wire = Wire(max_frame=4 << 20)
    got: list[Frame] = []
    wire.sink = got.extend
    big = Pub(seq=1, subject="a", data=b"y" * (1 << 20), targets=(1,))
    deliver(wire, b"".join(encode(big)), 64 * 1024)
    assert got == [Pubs((big,))]
    assert len(wire._buffer) >= 1 << 20
    deliver(wire, b"".join(encode(Accept(2))), 100)  # the next read gives the memory back
    assert got[-1] == Accept(2)
    assert len(wire._buffer) == 256 * 1024


async def test_an_oversized_length_is_refused_before_any_room_is_made() -> None:
    wire = Wire(max_frame=1 << 20)
    lost: list[str] = []
    wire.sink = lambda frames: None
    wire.on_lost = lost.append
    deliver(wire, struct.pack(">IB", 1 << 30, 4), 5)
    assert lost
    assert "outside 1..1048576" in lost[0]
    assert len(wire._buffer) == 256 * 1024


async def test_a_frame_written_in_pieces_arrives_whole_when_the_socket_takes_part() -> None:
    """``Connection.write_parts`` gives a frame's pieces to one ``writev`` where the socket
    takes them; what a full socket buffer does not take goes through the transport, in
    order, after it. Here the socket's send buffer is small and nobody reads at first."""
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    theirs.setblocking(False)
    transport, wire = await loop.connect_accepted_socket(lambda: Wire(DEFAULT_MAX_FRAME), ours)
    conn = Connection(wire, ConnectionSettings(), Hello("them", DEFAULT_MAX_FRAME, 0), [])
    # A plain socket: the writev path is taken (uvloop: its transport's own writelines)
    assert conn._fd is not None or conn._writelines is not None
    frames = []
    for n in range(8):
        items = [
            (Envelope("a.b", bytes([n, k]) * 8192, {}, None, f"{n}-{k}"), (1,), False)
            for k in range(16)
        ]
        parts, count = encode_pub_parts(n * 16 + 1, items, 0, 1 << 20)
        assert count == 16
        frames.append(b"".join(parts))
        conn.write_parts(parts)
    assert transport.get_write_buffer_size() > 0  # the socket did not take it all
    expected = b"".join(frames)
    got = bytearray()
    async with asyncio.timeout(10):
        while len(got) < len(expected):
            got += await loop.sock_recv(theirs, 1 << 16)
    assert bytes(got) == expected
    transport.close()
    theirs.close()
