"""The reading side of a direct connection (``Wire``): bytes go into one reused buffer, frames
are cut where they lie, and a bigger buffer is made only for a frame whose length passed the
largest-frame check."""

from __future__ import annotations

import struct

import pytest

from meshbus.channels.direct.connection import Wire
from meshbus.channels.direct.frames import Accept, Frame, Pub, Pubs, encode

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
