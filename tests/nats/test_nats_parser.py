"""``MeshClient``'s protocol and header parsing (``meshbus_nats._wire``) against nats-py's
own parser, on generated input: whatever nats-py reads from the wire, meshbus must read the
same way."""

from __future__ import annotations

import asyncio
import itertools
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nats.aio.client import Client
from nats.errors import ProtocolError
from nats.protocol.parser import HMSG_RE, MSG_RE, Parser

from meshbus.headers import MESSAGE_ID
from meshbus_nats._wire import (
    FAST_READ,
    MeshClient,
    _Parser,
    parse_header_block,
    split_message,
)

# -- header blocks ---------------------------------------------------------------------------

_PIECES = st.one_of(
    st.binary(max_size=6),
    st.text(max_size=6).map(str.encode),
    st.sampled_from(
        [b" ", b"\t", b"\x1c", b"\x0b", b":", b": ", b"\r", b"\n", b"\xa0", b"\xc2\xa0", b"mb-id"]
    ),
)
_LINES = st.lists(_PIECES, max_size=6).map(b"".join)
_BLOCKS = st.lists(_LINES, max_size=5).map(
    lambda lines: b"NATS/1.0\r\n" + b"\r\n".join(lines) + b"\r\n\r\n"
)


def _as_nats_py_reads(block: bytes) -> dict[str, str]:
    return Client._parse_header_lines(block[len(b"NATS/1.0\r\n") :])


def _kept_value_not_utf8(block: bytes) -> bool:
    """Whether a field nats-py keeps (its name ASCII without whitespace) has a value that is
    not UTF-8 (nats-py puts U+FFFD there; meshbus leaves such a block to nats-py)."""
    for line in block[len(b"NATS/1.0\r\n") :].split(b"\r\n"):
        name, sep, value = line.partition(b":")
        kept = name.strip().isascii() and not any(c.isspace() for c in name.strip().decode())
        if sep and kept:
            try:
                value.decode()
            except UnicodeDecodeError:
                return True
    return False


def _check(block: bytes) -> None:
    parsed = parse_header_block(block)
    if parsed is None:
        assert _kept_value_not_utf8(block)
    else:
        assert parsed == _as_nats_py_reads(block)


@given(_BLOCKS)
def test_header_blocks_parse_as_nats_py_parses_them(block: bytes) -> None:
    _check(block)


@given(st.one_of(st.binary(max_size=40), st.text(max_size=40).map(str.encode)))
def test_id_only_blocks_parse_as_nats_py_parses_them(value: bytes) -> None:
    _check(b"NATS/1.0\r\nmb-id:" + value + b"\r\n\r\n")
    _check(b"NATS/1.0\r\nmb-id: " + value + b"\r\n\r\n")


_NAMES = st.text(alphabet="!#$%&'*+-.^_`|~0123456789abcXYZ", min_size=1, max_size=12)


@given(st.dictionaries(_NAMES, st.text(max_size=20), max_size=5), st.text(max_size=30))
def test_blocks_meshbus_writes_read_back(headers: dict[str, str], message_id: str) -> None:
    """What ``MeshClient`` writes, ``parse_header_block`` and nats-py read alike."""
    client = MeshClient()
    block = client._header_block({MESSAGE_ID: message_id, **headers})
    parsed = parse_header_block(block)
    assert parsed == _as_nats_py_reads(block)
    assert parsed is not None
    assert parsed[MESSAGE_ID] == re.sub(r"[\r\n]", " ", message_id).strip()  # as nats-py writes


def test_status_lines_and_foreign_blocks_are_left_to_nats_py() -> None:
    assert parse_header_block(b"NATS/1.0 503\r\n\r\n") is None
    assert parse_header_block(b"NATS/1.0 100 Idle Heartbeat\r\nk: v\r\n\r\n") is None
    assert parse_header_block(b"HTTP/1.1\r\nk: v\r\n\r\n") is None
    assert parse_header_block(b"NATS/1.0\r\nmb-id: \xff\r\n\r\n") is None


# -- MSG / HMSG control lines ------------------------------------------------------------------

_TOKENS = st.text(alphabet="abcXYZ019._>*$-:", min_size=1, max_size=12).map(str.encode)
_SEPARATORS = st.sampled_from([b" ", b"\t", b"  ", b" \t"])


@st.composite
def _control_lines(draw: Any) -> tuple[bytes, tuple[bytes, int, bytes, int, int]]:
    sep = draw(_SEPARATORS)
    subject, sid, reply = draw(_TOKENS), draw(st.integers(0, 2**40)), draw(st.none() | _TOKENS)
    size = draw(st.integers(0, 2**24))
    parts = [draw(st.sampled_from([b"MSG", b"HMSG"])), subject, str(sid).encode()]
    if reply is not None:
        parts.append(reply)
    header_size = 0
    if parts[0] == b"HMSG":
        header_size = draw(st.integers(0, size))
        parts.append(str(header_size).encode())
    parts.append(str(size).encode())
    return sep.join(parts), (subject, sid, reply or b"", header_size, size)


@given(_control_lines())
def test_control_lines_split_as_nats_py_reads_them(case: Any) -> None:
    line, expected = case
    match = (HMSG_RE if line.startswith(b"H") else MSG_RE).match(line + b"\r\n")
    assert match is not None
    groups = match.groups()
    subject, sid, _, reply = groups[:4]
    header_size = int(groups[4]) if line.startswith(b"H") else 0
    assert (subject, int(sid), reply or b"", header_size, int(groups[-1])) == expected
    assert split_message(line) == expected


@pytest.mark.parametrize(
    "line",
    [
        b"MSG a",
        b"MSG a 1",
        b"MSGa 1 5",
        b"MSG a x 5",
        b"MSG a 1 5 ",
        b"MSG a 1 r 5 6",
        b"HMSG a 1 5",
        b"HMSG a 1 6 5",
        b"HMSG a 1 r 2 -5",
        b"MSG a 1 +5",
    ],
)
def test_malformed_control_lines_are_protocol_errors(line: bytes) -> None:
    with pytest.raises(ProtocolError):
        split_message(line)


@pytest.mark.parametrize("line", [b"PING", b"PONG", b"+OK", b"INFO {}", b"-ERR 'x'"])
def test_other_lines_are_not_messages(line: bytes) -> None:
    assert split_message(line) is None


# -- whole reads -------------------------------------------------------------------------------


class _Recorder:
    """What a parser hands the client, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    async def _process_msg(self, *args: Any) -> None:
        self.events.append(("msg", *args))

    async def _queue_msg(self, *args: Any) -> None:
        self.events.append(("msg", *args))

    def _take_direct(self, *args: Any) -> bool:
        return False

    async def _process_ping(self) -> None:
        self.events.append(("ping",))

    async def _process_pong(self) -> None:
        self.events.append(("pong",))

    async def _process_info(self, info: Any) -> None:
        self.events.append(("info", info))

    async def _process_err(self, err: str) -> None:
        self.events.append(("err", err))


_OTHER_LINES = st.sampled_from(
    [b"PING\r\n", b"PONG\r\n", b"+OK\r\n", b'INFO {"max_payload":1}\r\n', b"-ERR 'Stale'\r\n"]
)


@st.composite
def _messages(draw: Any) -> bytes:
    subject, sid, reply = draw(_TOKENS), draw(st.integers(0, 99)), draw(st.none() | _TOKENS)
    # A header block starts with its version line (the server checks): nats-py's HMSG
    # expression, whose \s matches CRLF too, would read a block of digits as part of the line.
    headers = draw(st.none() | st.binary(max_size=30).map(b"NATS/1.0\r\n".__add__))
    payload = draw(st.binary(max_size=40) | st.sampled_from([b"\r\n", b"MSG a 1 2\r\n"]))
    args = [subject, str(sid).encode()] + ([reply] if reply is not None else [])
    if headers is None:
        line = b"MSG " + b" ".join([*args, str(len(payload)).encode()])
        return line + b"\r\n" + payload + b"\r\n"
    sizes = [str(len(headers)).encode(), str(len(headers) + len(payload)).encode()]
    return b"HMSG " + b" ".join(args + sizes) + b"\r\n" + headers + payload + b"\r\n"


@settings(max_examples=200)
@given(st.lists(_messages() | _OTHER_LINES, max_size=12), st.lists(st.integers(0, 400)))
def test_reads_parse_as_nats_py_parses_them(items: list[bytes], cuts: list[int]) -> None:
    """The same bytes, cut into reads anywhere, give nats-py's parser and ``_Parser`` the same
    messages and control lines in the same order."""
    wire = b"".join(items)
    points = sorted({min(cut, len(wire)) for cut in cuts} | {0, len(wire)})
    reads = [wire[a:b] for a, b in itertools.pairwise(points)]

    async def feed(parser: Parser) -> list[tuple[Any, ...]]:
        for data in reads:
            await parser.parse(data)
        assert not parser.buf
        return parser.nc.events  # type: ignore[no-any-return]

    loop = asyncio.new_event_loop()
    try:
        theirs = loop.run_until_complete(feed(Parser(_Recorder())))
        ours = loop.run_until_complete(feed(_Parser(_Recorder())))  # type: ignore[arg-type]
    finally:
        loop.close()
    assert ours == theirs
    assert len([e for e in ours if e[0] == "info"]) == items.count(b'INFO {"max_payload":1}\r\n')


def test_mesh_clients_read_with_their_own_parser() -> None:
    assert FAST_READ
    assert isinstance(MeshClient()._ps, _Parser)


@pytest.mark.parametrize(
    "wire",
    [b"HMSG a 1 6 5\r\n", b"HMSG a 1 2 3 \r\n", b"HMSG a x 2 3\r\n", b"HMSG a 1\r\n", b"FOO\r\n"],
)
def test_malformed_reads_are_protocol_errors(wire: bytes) -> None:
    """Bad lines raise ``ProtocolError``, which makes nats-py drop the connection."""
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(ProtocolError):
            loop.run_until_complete(_Parser(_Recorder()).parse(wire))  # type: ignore[arg-type]
    finally:
        loop.close()
