"""The MORE flag: a publisher marks every PUB frame of one write but the last, and the listener
confirms the run with one ACCEPT (the publisher then wakes once for it, not once per frame).
Real sockets against a real listener; the test speaks the protocol itself, to see each frame."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator, Callable

import pytest
from test_bad_peers import said_hello  # the hello exchange, and the id of orders.> (group g)

import meshbus
from meshbus.channels.direct import inbound as inbound_module
from meshbus.channels.direct.frames import (
    Accept,
    FrameDecoder,
    Pubs,
    encode_pubs,
)
from meshbus.transport import Envelope

Item = tuple[Envelope, tuple[int, ...], bool]


def items(interest: int, count: int, size: int = 10) -> list[Item]:
    return [
        (Envelope("orders.new", b"x" * size, {}, None, f"id-{n}"), (interest,), False)
        for n in range(count)
    ]


def test_frames_but_the_last_of_a_write_are_marked_more() -> None:
    many = items(1, 10, size=1000)
    decoder = FrameDecoder()
    at, frames = 0, []
    while at < len(many):
        raw, count = encode_pubs(at + 1, many, at, limit=3000)
        at += count
        (frame,) = decoder.feed(raw)
        assert isinstance(frame, Pubs)
        frames.append(frame)
    assert len(frames) > 2
    assert [f.more for f in frames] == [True] * (len(frames) - 1) + [False]
    # One frame that holds them all is the last of its write, unless the writer says otherwise.
    (alone,) = decoder.feed(encode_pubs(1, many[:2])[0])
    (told,) = decoder.feed(encode_pubs(1, many[:2], more=True)[0])
    assert isinstance(alone, Pubs)
    assert isinstance(told, Pubs)
    assert (alone.more, told.more) == (False, True)
    assert alone.messages == told.messages


async def frames_from(reader: asyncio.StreamReader, count: int) -> list[object]:
    decoder = FrameDecoder()
    got: list[object] = []
    async with asyncio.timeout(5):
        while len(got) < count:
            (length,) = struct.unpack(">I", head := await reader.readexactly(4))
            got += decoder.feed(head + await reader.readexactly(length))
    return got


@contextlib.asynccontextmanager
async def serving(credit: int = 1024) -> AsyncIterator[tuple[int, meshbus.Subscription]]:
    """A listening bus's port and its subscription to ``orders.>`` (group ``g``)."""
    bus = meshbus.connect("memory://unused", listen=f"tcp://127.0.0.1:0?credit={credit}")
    async with bus, bus.subscribe("orders.>", group="g") as sub:
        yield bus._listener.port, sub  # type: ignore[union-attr]


@pytest.mark.asyncio
async def test_a_run_of_frames_is_accepted_once_by_the_last(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(inbound_module, "DEFERRED_FOR", 60.0)  # only the last frame answers
    async with serving() as (port, sub):
        reader, writer, interest = await said_hello(port)
        batch = items(interest, 5)
        first, _ = encode_pubs(1, batch[:3], more=True)
        last, _ = encode_pubs(4, batch[3:])
        writer.write(first)
        await writer.drain()
        await asyncio.sleep(0.05)  # read on its own: its ACCEPT waits for the next frame
        writer.write(last)
        (answer,) = await frames_from(reader, 1)
        assert answer == Accept(5)
        got = [await anext(aiter(sub)) for _ in range(5)]
        assert [m.id for m in got] == [f"id-{n}" for n in range(5)]
        for msg in got:
            await msg.ack()
        writer.close()


async def first_answer(frames: Callable[[int], list[bytes]], credit: int = 1024) -> object:
    """Write the PUB frames that ``frames`` makes for the listener's interest id, in one go;
    return the first frame the listener sends back."""
    async with serving(credit) as (port, _):
        reader, writer, interest = await said_hello(port)
        writer.write(b"".join(frames(interest)))
        (answer,) = await frames_from(reader, 1)
        writer.close()
        return answer


@pytest.mark.asyncio
async def test_a_run_cut_short_is_still_accepted() -> None:
    """A publisher that sends a MORE frame and nothing after it (its publish was cancelled
    between frames) still gets its ACCEPT, a few milliseconds later."""
    answer = await first_answer(lambda interest: [encode_pubs(1, items(interest, 2), more=True)[0]])
    assert answer == Accept(2)


@pytest.mark.asyncio
async def test_a_long_run_is_accepted_every_quarter_of_the_credit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The publisher holds at most a quarter of the credit unconfirmed, however long its run."""
    monkeypatch.setattr(inbound_module, "DEFERRED_FOR", 60.0)

    def run_of_three(interest: int) -> list[bytes]:
        batch = items(interest, 6)
        return [encode_pubs(n, batch[n - 1 : n + 1], more=True)[0] for n in (1, 3, 5)]

    # A credit of 16: a quarter of it is 4 messages, reached by the second frame.
    assert await first_answer(run_of_three, credit=16) == Accept(4)


@pytest.mark.asyncio
async def test_publish_many_over_many_frames_is_confirmed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A publish_many of frames marked MORE is confirmed by the ACCEPT of its last frame, not
    by the listener's alarm: it returns at once with the alarm an hour away."""
    monkeypatch.setattr(inbound_module, "DEFERRED_FOR", 3600.0)
    async with serving() as (port, sub), meshbus.connect(f"tcp://127.0.0.1:{port}") as client:
        payload = b"y" * (64 * 1024)  # four to a 256 KiB frame
        async with asyncio.timeout(10):
            await client.publish_many([("orders.big", payload)] * 40)
        got = [await anext(aiter(sub)) for _ in range(40)]
        assert all(m.data == payload for m in got)
        for msg in got:
            await msg.ack()
