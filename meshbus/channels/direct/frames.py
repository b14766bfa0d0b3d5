"""Frames of the direct-channel wire protocol, version 2 (see docs/direct-protocol.md).

Every frame is ``length:u32be | type:u8 | body``. :func:`encode` turns a frame into buffers
to write (a payload is never copied); :class:`FrameDecoder` turns received bytes back into
frames, checking each length against its limit before buffering a byte of the body. Anything
malformed raises ``ProtocolError``, and only that.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum

from meshbus.errors import ProtocolError
from meshbus.transport import Envelope

__all__ = [
    "MAGIC",
    "REFUSE_CLOSING",
    "REFUSE_NO_SUBSCRIBER",
    "VERSION",
    "Accept",
    "Bye",
    "Credit",
    "Frame",
    "FrameDecoder",
    "FrameType",
    "Hello",
    "Interest",
    "Ping",
    "Pong",
    "Pub",
    "Pubs",
    "Refuse",
    "Reply",
    "Uninterest",
    "encode",
    "encode_one",
    "encode_pubs",
    "encode_reply",
]

REFUSE_NO_SUBSCRIBER = 1
"""REFUSE code: nothing here subscribes to it (any more)."""
REFUSE_CLOSING = 2
"""REFUSE code: the listener is closing; the message is for whoever takes over."""

MAGIC = b"MBUS"
VERSION = 2
DEFAULT_MAX_FRAME = 64 * 1024 * 1024 + 64 * 1024

_HEAD = struct.Struct(">IB")
_unpack_head = _HEAD.unpack_from
_SEQ_FRAME = struct.Struct(">IBQ")  # the head of a frame whose body starts with a u64 seq
_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_PUB_HEAD = struct.Struct(">QH")  # first seq, message count
# Each message of a PUB frame: flags, subject, id, target count, key, headers, payload sizes.
_MSG_HEAD = struct.Struct(">BBBHHII")
# A PUB frame of one message: frame head, PUB head, and the head of its message.
_ONE_FRAME = struct.Struct(">IBQHBBBHHII")
_ONE_HEAD = struct.Struct(">QHBBBHHII")  # the body of a PUB frame up to its first message's fields
_REQUEST = 1
_HAS_KEY = 2
_SMALL_FRAME = 2048
MAX_PUBS = 0xFFFF
"""The most messages one PUB frame carries."""


class FrameType(IntEnum):
    """The frame types of protocol version 2."""

    HELLO = 1
    INTEREST = 2
    UNINTEREST = 3
    PUB = 4
    ACCEPT = 5
    REFUSE = 6
    CREDIT = 7
    PING = 8
    PONG = 9
    REPLY = 10
    BYE = 11


# The frame types the hot paths compare with, as plain ints (an IntEnum member costs a lookup).
_PUB, _ACCEPT, _REPLY = int(FrameType.PUB), int(FrameType.ACCEPT), int(FrameType.REPLY)


@dataclass(frozen=True, slots=True)
class Interest:
    """A listener's local group (``group`` set) or broadcast pattern (``group`` None)."""

    id: int
    pattern: str
    group: str | None


@dataclass(frozen=True, slots=True)
class Hello:
    """The first frame each side sends."""

    node: str
    max_frame: int
    credit: int
    interests: tuple[Interest, ...] = ()
    token: str | None = None
    version: int = VERSION


@dataclass(frozen=True, slots=True)
class Uninterest:
    """An interest is gone."""

    id: int


class Pub(Envelope):
    """One message of a PUB frame, for the listed interests of the receiving peer.

    It is the envelope the listener queues locally (no copy into another object).
    """

    __slots__ = ("request", "seq", "targets")

    def __init__(
        self,
        seq: int,
        subject: str,
        data: bytes,
        targets: tuple[int, ...] = (),
        headers: dict[str, str] | None = None,
        key: str | None = None,
        id: str = "",
        request: bool = False,
    ) -> None:
        self.seq = seq
        self.subject = subject
        self.data = data
        self.targets = targets
        self.headers = {} if headers is None else headers
        self.key = key
        self.id = id
        self.request = request

    def _fields(self) -> tuple[object, ...]:
        return (
            self.seq,
            self.subject,
            self.data,
            self.targets,
            self.headers,
            self.key,
            self.id,
            self.request,
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pub) and self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Pub(seq={self.seq}, subject={self.subject!r}, targets={self.targets})"


@dataclass(slots=True)  # not frozen: made for every PUB frame, and frozen init is slower
class Pubs:
    """A PUB frame: messages with consecutive sequence numbers, in publish order."""

    messages: tuple[Pub, ...]


@dataclass(frozen=True, slots=True)
class Accept:
    """Every PUB up to and including ``seq`` is queued for a subscriber."""

    seq: int


@dataclass(frozen=True, slots=True)
class Refuse:
    """PUB ``seq`` was not taken."""

    seq: int
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class Credit:
    """The listener grants ``messages`` more PUBs."""

    messages: int


@dataclass(frozen=True, slots=True)
class Ping:
    """Are you there?"""

    nonce: int


@dataclass(frozen=True, slots=True)
class Pong:
    """Yes (answers the PING with the same nonce)."""

    nonce: int


@dataclass(slots=True)  # not frozen: made for every reply
class Reply:
    """The answer to request PUB ``seq``."""

    seq: int
    data: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Bye:
    """The sender is draining: nothing new, in-flight frames still complete."""

    reason: str


Frame = Hello | Interest | Uninterest | Pubs | Accept | Refuse | Credit | Ping | Pong | Reply | Bye


# -- encoding -------------------------------------------------------------------------------


def _str(value: str, width: struct.Struct, what: str) -> bytes:
    raw = value.encode()
    limit = (1 << (8 * width.size)) - 1
    if len(raw) > limit:
        raise _too_long(what, len(raw), limit)
    return width.pack(len(raw)) + raw


def _headers(headers: dict[str, str]) -> bytes:
    parts = [_U16.pack(len(headers))]
    for name, value in headers.items():
        parts.append(_str(name, _U16, "header name"))
        parts.append(_str(value, _U32, "header value"))
    return b"".join(parts)


def _frame(kind: FrameType, body: bytes, payload: bytes = b"") -> list[bytes]:
    head = _HEAD.pack(1 + len(body) + len(payload), kind)
    return [head + body, payload] if payload else [head + body]


def _too_long(what: str, size: int, limit: int) -> ProtocolError:
    return ProtocolError(f"{what} of {size} bytes does not fit the frame ({limit} at most)")


def encode_pubs(
    first_seq: int,
    items: Sequence[tuple[Envelope, tuple[int, ...], bool]],
    start: int = 0,
    limit: int = DEFAULT_MAX_FRAME,
) -> tuple[bytes, int]:
    """One PUB frame for ``items[start:]`` — each ``(envelope, targets, request)`` — numbered
    from ``first_seq``: as many as fit in ``limit`` bytes (at least one) and ``MAX_PUBS``.
    Return the frame and how many messages it carries."""
    parts: list[bytes] = [b""]
    pack = _MSG_HEAD.pack
    size = 1 + _PUB_HEAD.size
    stop = min(len(items), start + MAX_PUBS)
    # The targets and subject of consecutive messages are mostly the very same objects: their
    # encoded form (``middle``) is made once per run of them.
    last_subject: str | None = None
    last_targets: tuple[int, ...] | None = None
    middle = b""
    n_subject = n_targets = 0
    at = start
    while at < stop:
        envelope, targets, request = items[at]
        subject = envelope.subject
        if subject is not last_subject or targets is not last_targets:
            raw_subject = subject.encode()
            n_subject, n_targets = len(raw_subject), len(targets)
            if n_subject > 0xFF:
                raise _too_long("subject", n_subject, 0xFF)
            if n_targets > 0xFFFF:
                raise _too_long("target list", n_targets, 0xFFFF)
            middle = struct.pack(f">{n_targets}I", *targets) + raw_subject
            last_subject, last_targets = subject, targets
        message_id = envelope.id.encode()
        if len(message_id) > 0xFF:
            raise _too_long("message id", len(message_id), 0xFF)
        data = envelope.data
        key = envelope.key
        flags = _REQUEST if request else 0
        if key is None and not envelope.headers:
            grown = size + _MSG_HEAD.size + len(middle) + len(message_id) + len(data)
            if grown > limit and at > start:
                break
            parts += (
                pack(flags, n_subject, len(message_id), n_targets, 0, 0, len(data)),
                middle,
                message_id,
                data,
            )
        else:
            raw_key = b""
            if key is not None:
                raw_key = key.encode()
                flags |= _HAS_KEY
                if len(raw_key) > 0xFFFF:
                    raise _too_long("key", len(raw_key), 0xFFFF)
            headers = _headers(envelope.headers) if envelope.headers else b""
            grown = size + _MSG_HEAD.size + len(middle) + len(message_id) + len(raw_key)
            grown += len(headers) + len(data)
            if grown > limit and at > start:
                break
            head = pack(
                flags,
                n_subject,
                len(message_id),
                n_targets,
                len(raw_key),
                len(headers),
                len(data),
            )
            parts += (head, middle, message_id, raw_key, headers, data)
        size = grown
        at += 1
    parts[0] = _HEAD.pack(size, _PUB) + _PUB_HEAD.pack(first_seq, at - start)
    return b"".join(parts), at - start


_request_blocks: dict[str, tuple[tuple[int, ...], bytes, int]] = {}
"""Per subject: the targets last sent with it, their encoded form followed by the subject's,
and the subject's length in bytes."""


def encode_one(seq: int, envelope: Envelope, targets: tuple[int, ...], request: bool) -> bytes:
    """A PUB frame of one message (a request, or a lone publish): ``encode_pubs`` without its
    set-up, for the usual message (no key, no headers), its heads packed in one call."""
    if envelope.key is not None or envelope.headers:
        return encode_pubs(seq, [(envelope, targets, request)], limit=1 << 62)[0]
    subject = envelope.subject
    known = _request_blocks.get(subject)
    if known is None or known[0] != targets:
        raw_subject = subject.encode()
        if len(raw_subject) > 0xFF or len(targets) > 0xFFFF:
            return encode_pubs(seq, [(envelope, targets, request)], limit=1 << 62)[0]  # raises
        if len(_request_blocks) >= 1024:
            _request_blocks.clear()
        block = struct.pack(f">{len(targets)}I", *targets) + raw_subject
        known = _request_blocks[subject] = (targets, block, len(raw_subject))
    _, block, n_subject = known
    message_id, data = envelope.id.encode(), envelope.data
    if len(message_id) > 0xFF:
        return encode_pubs(seq, [(envelope, targets, request)], limit=1 << 62)[0]  # raises
    size = _ONE_FRAME.size - 4 + len(block) + len(message_id) + len(data)
    flags = _REQUEST if request else 0
    head = _ONE_FRAME.pack(
        size, _PUB, seq, 1, flags, n_subject, len(message_id), len(targets), 0, 0, len(data)
    )
    return b"".join((head, block, message_id, data))


def encode_reply(seq: int, data: bytes, headers: dict[str, str]) -> bytes:
    """A REPLY frame, in one piece."""
    raw = _headers(headers) if headers else b"\0\0"
    return b"".join((_SEQ_FRAME.pack(9 + len(raw) + len(data), _REPLY, seq), raw, data))


def encode(frame: Frame | Pub) -> list[bytes]:
    """The buffers that carry ``frame`` (write them in order); a lone ``Pub`` goes as a PUB
    frame of one message."""
    # The frames sent most often first, their heads packed in one call.
    if isinstance(frame, Accept):
        return [_SEQ_FRAME.pack(9, _ACCEPT, frame.seq)]
    if isinstance(frame, Reply):
        return [encode_reply(frame.seq, frame.data, frame.headers)]
    if isinstance(frame, Pub):
        frame = Pubs((frame,))
    if isinstance(frame, Pubs):
        items = [(pub, pub.targets, pub.request) for pub in frame.messages]
        for earlier, later in zip(frame.messages, frame.messages[1:], strict=False):
            if later.seq != earlier.seq + 1:
                raise ProtocolError("the messages of a PUB frame have consecutive seq numbers")
        first = frame.messages[0].seq if frame.messages else 0
        raw, count = encode_pubs(first, items, limit=1 << 62)
        if count != len(items):
            raise ProtocolError(f"a PUB frame carries at most {MAX_PUBS} messages")
        return [raw]
    if isinstance(frame, Credit):
        return _frame(FrameType.CREDIT, _U32.pack(frame.messages))
    if isinstance(frame, Ping):
        return _frame(FrameType.PING, _U64.pack(frame.nonce))
    if isinstance(frame, Pong):
        return _frame(FrameType.PONG, _U64.pack(frame.nonce))
    if isinstance(frame, Interest):
        body = _U32.pack(frame.id) + _str(frame.pattern, _U8, "pattern")
        return _frame(FrameType.INTEREST, body + _str(frame.group or "", _U8, "group"))
    if isinstance(frame, Uninterest):
        return _frame(FrameType.UNINTEREST, _U32.pack(frame.id))
    if isinstance(frame, Refuse):
        body = _U64.pack(frame.seq) + _U8.pack(frame.code) + _str(frame.reason, _U16, "reason")
        return _frame(FrameType.REFUSE, body)
    if isinstance(frame, Bye):
        return _frame(FrameType.BYE, _str(frame.reason, _U16, "reason"))
    hello = {
        "node": frame.node,
        "max_frame": frame.max_frame,
        "credit": frame.credit,
        "interests": [[i.id, i.pattern, i.group] for i in frame.interests],
    }
    if frame.token is not None:
        hello["token"] = frame.token
    body = MAGIC + _U8.pack(frame.version) + json.dumps(hello, separators=(",", ":")).encode()
    return _frame(FrameType.HELLO, body)


# -- decoding -------------------------------------------------------------------------------


class _Reader:
    """Reads fields off one frame body; any shortfall or bad text is a ProtocolError."""

    __slots__ = ("_at", "_body", "kind")

    def __init__(self, body: bytes | memoryview, kind: str) -> None:
        self._body = body
        self._at = 0
        self.kind = kind

    def uint(self, width: struct.Struct) -> int:
        end = self._at + width.size
        if end > len(self._body):
            raise ProtocolError(f"{self.kind} frame is truncated")
        (value,) = width.unpack_from(self._body, self._at)
        self._at = end
        return int(value)

    def raw(self, size: int) -> bytes:
        end = self._at + size
        if end > len(self._body):
            raise ProtocolError(f"{self.kind} frame is truncated")
        value = bytes(self._body[self._at : end])
        self._at = end
        return value

    def text(self, width: struct.Struct) -> str:
        raw = self.raw(self.uint(width))
        try:
            return raw.decode()
        except UnicodeDecodeError as exc:
            raise ProtocolError(f"{self.kind} frame has text that is not UTF-8") from exc

    def headers(self) -> dict[str, str]:
        return {self.text(_U16): self.text(_U32) for _ in range(self.uint(_U16))}

    def rest(self) -> bytes:
        value = bytes(self._body[self._at :])
        self._at = len(self._body)
        return value

    def end(self) -> None:
        if self._at != len(self._body):
            raise ProtocolError(f"{self.kind} frame has {len(self._body) - self._at} extra bytes")


def _hello(r: _Reader) -> Hello:
    if r.raw(4) != MAGIC:
        raise ProtocolError("not a meshbus peer: the hello has no MBUS magic")
    version = r.uint(_U8)
    if version != VERSION:
        raise ProtocolError(f"peer speaks protocol version {version}; this side speaks {VERSION}")
    try:
        doc = json.loads(r.rest())
        interests = tuple(Interest(int(i), str(p), g) for i, p, g in doc["interests"])
        hello = Hello(
            node=doc["node"],
            max_frame=doc["max_frame"],
            credit=doc["credit"],
            interests=interests,
            token=doc.get("token"),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ProtocolError(f"malformed hello: {exc}") from exc
    fields_ok = (
        isinstance(hello.node, str)
        and type(hello.max_frame) is int
        and type(hello.credit) is int
        and hello.max_frame > 0
        and hello.credit >= 0
        and (hello.token is None or isinstance(hello.token, str))
        and all(i.group is None or isinstance(i.group, str) for i in interests)
    )
    if not fields_ok:
        raise ProtocolError("malformed hello: a field has the wrong type or range")
    return hello


_blocks: dict[bytes, tuple[tuple[int, ...], str]] = {}
"""Decoded targets and subject, by their bytes: a peer sends the same few again and again."""
_BLOCK_CACHED = 512


def _pubs(view: bytes | memoryview) -> Pubs:
    """PUB is the hot path: one fixed-layout head per message, no field-by-field reader, and
    fields sliced from one copy of the frame (cheaper than a view per field)."""
    body = view if type(view) is bytes else bytes(view)
    end = len(body)
    if end > 25:  # _ONE_HEAD.size, written as a number like the offsets below
        # A frame of one message without key or headers whose subject and targets came before
        # (a request, mostly), without the loop.
        first, count, flags, n_subject, n_id, n_targets, n_key, n_headers, n_data = (
            _ONE_HEAD.unpack_from(body)
        )
        at = 25 + 4 * n_targets + n_subject
        stop = at + n_id
        if count == 1 and not (flags & _HAS_KEY or n_key or n_headers) and stop + n_data == end:
            known = _blocks.get(body[25:at])
            if known is not None:
                try:
                    message_id = body[at:stop].decode()
                except UnicodeDecodeError as exc:
                    raise ProtocolError("PUB frame has text that is not UTF-8") from exc
                request = flags & _REQUEST == _REQUEST
                pub = Pub(first, known[1], body[stop:], known[0], {}, None, message_id, request)
                return Pubs((pub,))
    try:
        first, count = _PUB_HEAD.unpack_from(body, 0)
    except struct.error:
        raise ProtocolError("PUB frame is truncated") from None
    if not count:
        raise ProtocolError("PUB frame carries no message")
    at = _PUB_HEAD.size
    unpack = _MSG_HEAD.unpack_from
    # Consecutive messages mostly share their targets and subject: when the bytes are those of
    # the message before, its decoded values are reused (compared in place, nothing sliced).
    last = b""
    targets: tuple[int, ...] = ()
    subject = ""
    messages: list[Pub] = []
    try:
        for seq in range(first, first + count):
            flags, n_subject, n_id, n_targets, n_key, n_headers, n_data = unpack(body, at)
            at += _MSG_HEAD.size
            block = 4 * n_targets + n_subject
            stop = at + block + n_id + n_key + n_headers + n_data
            if stop > end:
                raise ProtocolError("PUB frame is truncated")
            if block != len(last) or not body.startswith(last, at):
                last = body[at : at + block]
                known = _blocks.get(last)
                if known is None:
                    targets = struct.unpack_from(f">{n_targets}I", last) if n_targets else ()
                    subject = last[4 * n_targets :].decode()
                    if block <= _BLOCK_CACHED:
                        if len(_blocks) >= 1024:
                            _blocks.clear()
                        _blocks[last] = (targets, subject)
                else:
                    targets, subject = known
            at += block
            message_id = body[at : at + n_id].decode()
            at += n_id
            key = None
            if flags & _HAS_KEY:
                key = body[at : at + n_key].decode()
            at += n_key
            headers: dict[str, str] = {}
            if n_headers:
                with memoryview(body) as whole:
                    reader = _Reader(whole[at : at + n_headers], "PUB")
                    headers = reader.headers()
                    reader.end()
                at += n_headers
            messages.append(
                Pub(
                    seq,
                    subject,
                    body[at:stop],
                    targets,
                    headers,
                    key,
                    message_id,
                    flags & _REQUEST == _REQUEST,
                )
            )
            at = stop
    except struct.error:
        raise ProtocolError("PUB frame is truncated") from None
    except UnicodeDecodeError as exc:
        raise ProtocolError("PUB frame has text that is not UTF-8") from exc
    if at != end:
        raise ProtocolError(f"PUB frame has {end - at} extra bytes")
    return Pubs(tuple(messages))


_FIXED: dict[int, tuple[type[Accept | Credit | Ping | Pong], struct.Struct, str]] = {
    int(FrameType.ACCEPT): (Accept, _U64, "ACCEPT"),
    int(FrameType.CREDIT): (Credit, _U32, "CREDIT"),
    int(FrameType.PING): (Ping, _U64, "PING"),
    int(FrameType.PONG): (Pong, _U64, "PONG"),
}
_KINDS = frozenset(FrameType)


def _parse(kind: int, body: bytes | memoryview) -> Frame:
    if kind == _PUB:
        return _pubs(body)
    if kind == _REPLY and len(body) >= 10 and not body[8] and not body[9]:
        return Reply(_U64.unpack_from(body)[0], bytes(body[10:]))  # no headers: the usual
    fixed = _FIXED.get(kind)
    if fixed is not None:  # one integer: the frames that come most often after PUB
        make, width, name = fixed
        if len(body) != width.size:
            if len(body) < width.size:
                raise ProtocolError(f"{name} frame is truncated")
            raise ProtocolError(f"{name} frame has {len(body) - width.size} extra bytes")
        return make(width.unpack_from(body)[0])
    if kind not in _KINDS:
        raise ProtocolError(f"unknown frame type {kind}")
    frame_type = FrameType(kind)
    r = _Reader(body, frame_type.name)
    frame: Frame
    if frame_type is FrameType.REPLY:
        seq = r.uint(_U64)
        headers = r.headers()
        return Reply(seq=seq, headers=headers, data=r.rest())
    if frame_type is FrameType.HELLO:
        return _hello(r)
    if frame_type is FrameType.INTEREST:
        interest_id, pattern, group = r.uint(_U32), r.text(_U8), r.text(_U8)
        frame = Interest(interest_id, pattern, group or None)
    elif frame_type is FrameType.UNINTEREST:
        frame = Uninterest(r.uint(_U32))
    elif frame_type is FrameType.REFUSE:
        frame = Refuse(r.uint(_U64), r.uint(_U8), r.text(_U16))
    else:
        frame = Bye(r.text(_U16))
    r.end()
    return frame


class FrameDecoder:
    """Incremental decoder: ``feed`` received bytes, get whole frames back.

    A length prefix over ``max_frame`` (or of zero) raises ``ProtocolError`` as soon as its
    five header bytes are in, before any of the body is buffered.
    """

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes received and not yet part of a whole frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Frame]:
        """Add ``data``; return every frame it completes, in order."""
        buffer = self._buffer
        buffer += data
        frames, at, _ = self.cut(buffer, 0, len(buffer))
        if at:
            del buffer[:at]
        return frames

    def cut(self, buffer: bytearray, start: int, end: int) -> tuple[list[Frame], int, int]:
        """Decode the whole frames in ``buffer[start:end]``. Return them, where the first
        incomplete one starts, and its full size when its header is in (else 0) — already
        checked against ``max_frame``, so a reader may make room for it."""
        frames: list[Frame] = []
        at = start
        max_frame = self.max_frame
        while end - at >= 5:
            length, kind = _unpack_head(buffer, at)
            if length == 0 or length > max_frame:
                raise ProtocolError(
                    f"frame length {length} is outside 1..{max_frame}; closing the connection"
                )
            stop = at + 4 + length
            if stop > end:
                return frames, at, 4 + length
            if length > _SMALL_FRAME:
                with memoryview(buffer) as view:
                    frames.append(_parse(kind, view[at + 5 : stop]))
            elif kind == _PUB:  # two small copies cost less than a view
                frames.append(_pubs(bytes(buffer[at + 5 : stop])))
            else:
                frames.append(_parse(kind, bytes(buffer[at + 5 : stop])))
            at = stop
        return frames, at, 0
