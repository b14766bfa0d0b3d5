"""The direct-channel frame codec: round trips, chunking, and hostile input."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshbus.channels.direct.frames import (
    Accept,
    Bye,
    Credit,
    Frame,
    FrameDecoder,
    Hello,
    Interest,
    Ping,
    Pong,
    Pub,
    Pubs,
    Refuse,
    Reply,
    Uninterest,
    encode,
    encode_one,
    encode_pubs,
)
from meshbus.errors import ProtocolError

text = st.text(max_size=40)
short_text = st.text(max_size=20).filter(lambda t: len(t.encode()) <= 255)
headers = st.dictionaries(st.text(min_size=1, max_size=10), text, max_size=4)
u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)


def pubs_of(size: int, targets: int = 5) -> st.SearchStrategy[Pub]:
    """Messages of a PUB frame with payloads of up to ``size`` bytes."""
    return st.builds(
        Pub,
        seq=st.just(0),
        subject=short_text,
        data=st.binary(max_size=size),
        targets=st.lists(u32, max_size=targets).map(tuple),
        headers=headers,
        key=st.none() | text,
        id=short_text,
        request=st.booleans(),
    )


pub = pubs_of(300)


def numbered(first: int, messages: list[Pub]) -> Pubs:
    for at, message in enumerate(messages):
        message.seq = first + at
    return Pubs(tuple(messages))


frames: st.SearchStrategy[Frame] = st.one_of(
    st.builds(numbered, u64, st.lists(pub, min_size=1, max_size=4)),
    st.builds(Accept, u64),
    st.builds(Refuse, u64, st.integers(0, 255), text),
    st.builds(Credit, u32),
    st.builds(Ping, u64),
    st.builds(Pong, u64),
    st.builds(Reply, u64, st.binary(max_size=300), headers),
    st.builds(Bye, text),
    st.builds(Uninterest, u32),
    st.builds(Interest, u32, short_text.filter(bool), st.none() | short_text.filter(bool)),
    st.builds(
        Hello,
        node=text,
        max_frame=st.integers(1, 2**40),
        credit=st.integers(0, 2**31),
        interests=st.lists(st.builds(Interest, u32, text, st.none() | text), max_size=3).map(tuple),
        token=st.none() | text,
    ),
)


def wire(frame: Frame) -> bytes:
    return b"".join(encode(frame))


@given(st.lists(frames, max_size=6))
def test_frames_round_trip(batch: list[Frame]) -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"".join(wire(f) for f in batch)) == batch
    assert decoder.buffered == 0


def fed_in_chunks(stream: bytes, data: st.DataObject) -> list[Frame]:
    """The frames a decoder makes of ``stream`` fed in pieces cut where ``data`` draws."""
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    decoder = FrameDecoder()
    got: list[Frame] = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        got.extend(decoder.feed(stream[start:end]))
    return got


@given(st.lists(frames, min_size=1, max_size=4), st.data())
def test_any_chunking_gives_the_same_frames(batch: list[Frame], data: st.DataObject) -> None:
    assert fed_in_chunks(b"".join(wire(f) for f in batch), data) == batch


@given(st.binary(max_size=200))
def test_random_bytes_raise_only_protocol_error(junk: bytes) -> None:
    decoder = FrameDecoder(max_frame=1 << 16)
    try:
        decoder.feed(junk)
    except ProtocolError:
        pass


@given(frames, st.integers(0, 2**31), st.integers(0, 255))
def test_corrupted_frames_raise_only_protocol_error(frame: Frame, where: int, byte: int) -> None:
    raw = bytearray(wire(frame))
    raw[where % len(raw)] = byte
    try:
        FrameDecoder(max_frame=1 << 20).feed(bytes(raw))
    except ProtocolError:
        pass


# PUB frames over 2 KiB are cut from a view into the read buffer: read in place when their
# messages are large (1 KiB or more each, on average), copied whole first when they are small.
large_pubs = st.builds(numbered, u64, st.lists(pubs_of(3000, 3), min_size=1, max_size=8))


@given(st.lists(large_pubs, min_size=1, max_size=3), st.data())
def test_large_pub_frames_round_trip_in_any_chunking(
    batch: list[Pubs], data: st.DataObject
) -> None:
    got = fed_in_chunks(b"".join(wire(f) for f in batch), data)
    assert got == batch
    assert all(type(pub.data) is bytes for frame in got for pub in frame.messages)  # type: ignore[union-attr]
    assert all(type(pub.data) is bytes for frame in got for pub in frame.messages)  # type: ignore[union-attr]


@given(large_pubs, st.integers(0, 2**31), st.integers(0, 255))
def test_corrupted_large_pub_frames_raise_only_protocol_error(
    frame: Pubs, where: int, byte: int
) -> None:
    raw = bytearray(wire(frame))
    raw[where % len(raw)] = byte
    try:
        FrameDecoder(max_frame=1 << 20).feed(bytes(raw))
    except ProtocolError:
        pass


def test_an_oversized_length_prefix_fails_before_the_body_arrives() -> None:
    decoder = FrameDecoder(max_frame=1024)
    with pytest.raises(ProtocolError, match=r"outside 1\.\.1024"):
        decoder.feed(struct.pack(">IB", 2**31, 4))
    with pytest.raises(ProtocolError, match="outside"):
        FrameDecoder().feed(struct.pack(">IB", 0, 4))


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (struct.pack(">IB", 1, 99), "unknown frame type 99"),
        (struct.pack(">IB", 3, 5) + b"\0\0", "ACCEPT frame is truncated"),
        (struct.pack(">IB", 10, 5) + b"\0" * 9, "ACCEPT frame has 1 extra bytes"),
        (struct.pack(">IB", 9, 1) + b"HTTP/1.1", "no MBUS magic"),
        (struct.pack(">IB", 6, 1) + b"MBUS\x01", "version 1"),
        (struct.pack(">IB", 11, 4) + b"\0" * 10, "PUB frame carries no message"),
        (
            struct.pack(">IB", 26, 4) + b"\0" * 9 + b"\1" + b"\0" * 14 + b"\1",
            "PUB frame is truncated",
        ),
        (struct.pack(">IB", 8, 1) + b"MBUS\x02{}", "malformed hello"),
        (struct.pack(">IB", 5, 11) + b"\x00\x02\xff\xfe", "not UTF-8"),
    ],
)
def test_malformed_frames_say_what_is_wrong(raw: bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        FrameDecoder().feed(raw)


def test_a_bad_hello_field_type() -> None:
    body = b'MBUS\x02{"node":"n","max_frame":"big","credit":1,"interests":[]}'
    with pytest.raises(ProtocolError, match="wrong type"):
        FrameDecoder().feed(struct.pack(">IB", 1 + len(body), 1) + body)


def test_fields_too_long_for_the_wire_raise_at_encoding() -> None:
    with pytest.raises(ProtocolError, match="subject of 300 bytes"):
        encode(Pub(seq=1, subject="s" * 300, data=b""))


def test_a_lone_pub_is_a_frame_of_one() -> None:
    message = Pub(seq=7, subject="a", data=b"p" * 1000, targets=(3,), key="k")
    assert FrameDecoder().feed(b"".join(encode(message))) == [Pubs((message,))]


def test_pub_frames_keep_within_the_limit() -> None:
    items = [(Pub(0, "a.b", b"x" * 100), (1,), False) for _ in range(50)]
    frame, count = encode_pubs(5, items, limit=1000)
    assert len(frame) <= 1004
    assert 0 < count < 50
    [pubs] = FrameDecoder().feed(frame)
    assert isinstance(pubs, Pubs)
    assert [p.seq for p in pubs.messages] == list(range(5, 5 + count))
    # One message larger than the limit still goes alone (the payload limit bounds it).
    frame, count = encode_pubs(1, items, limit=10)
    assert count == 1


@given(pub, st.lists(u32, max_size=3).map(tuple), st.booleans())
def test_a_lone_message_frame_is_a_pub_frame_of_one(
    message: Pub, targets: tuple[int, ...], request: bool
) -> None:
    frame = encode_one(9, message, targets, request)
    assert frame == encode_pubs(9, [(message, targets, request)])[0]
    [pubs] = FrameDecoder().feed(frame)  # and it decodes back, by the general path or not
    assert isinstance(pubs, Pubs)
    (back,) = pubs.messages
    assert (back.subject, back.data, back.targets, back.id) == (
        message.subject,
        message.data,
        targets,
        message.id,
    )
    assert (back.key, back.headers, back.request) == (message.key, message.headers, request)
