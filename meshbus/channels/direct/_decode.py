"""Decoding of direct-protocol frames (public through ``frames``): the incremental
``FrameDecoder`` and the PUB fast paths."""

from __future__ import annotations

import json
import struct

from meshbus.channels.direct._types import (
    _HAS_KEY,
    _MORE,
    _MSG_HEAD,
    _ONE_HEAD,
    _PUB,
    _PUB_HEAD,
    _REPLY,
    _REQUEST,
    _SMALL_FRAME,
    _U8,
    _U16,
    _U32,
    _U64,
    DEFAULT_MAX_FRAME,
    MAGIC,
    VERSION,
    Accept,
    Bye,
    Credit,
    Frame,
    FrameType,
    Hello,
    Interest,
    Ping,
    Pong,
    Pub,
    Pubs,
    Refuse,
    Reply,
    Uninterest,
    _unpack_head,
)
from meshbus.errors import ProtocolError


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
_IN_PLACE = 1024
"""Bytes per message from which a PUB frame is read in place rather than copied whole."""


def _pubs(view: bytes | memoryview) -> Pubs:
    """PUB is the hot path: one fixed-layout head per message, no field-by-field reader, and
    fields sliced from one copy of the frame (cheaper than a view per field). A frame of
    large messages (a view into the read buffer) is read in place instead, each field and
    payload copied out once (copying it whole first would copy every payload twice)."""
    if isinstance(view, memoryview):
        size = len(view)
        if size >= _PUB_HEAD.size and size >= _IN_PLACE * _PUB_HEAD.unpack_from(view)[1]:
            return _pub_loop(view, True)
        return _pubs_copied(bytes(view))
    return _pubs_copied(view)


def _pubs_copied(body: bytes) -> Pubs:
    pub = lone_pub(body)
    if pub is not None:
        return Pubs((pub,))
    return _pub_loop(body, False)


def lone_pub(body: bytes) -> Pub | None:
    """The message of a PUB frame ``body`` that carries one, without key or headers, whose
    subject and targets came before (a request, mostly), read without the loop of
    ``_pub_loop``; None for any other frame (``_pub_loop`` reads those, or says what is
    wrong)."""
    if len(body) <= 25:  # _ONE_HEAD.size, written as a number like the offsets below
        return None
    first, count, flags, n_subject, n_id, n_targets, n_key, n_headers, n_data = (
        _ONE_HEAD.unpack_from(body)
    )
    at = 25 + 4 * n_targets + n_subject
    stop = at + n_id
    if count != 1 or flags & _HAS_KEY or n_key or n_headers or stop + n_data != len(body):
        return None
    known = _blocks.get(body[25:at])
    if known is None:
        return None
    try:
        message_id = body[at:stop].decode()
    except UnicodeDecodeError as exc:
        raise ProtocolError("PUB frame has text that is not UTF-8") from exc
    return Pub(
        first, known[1], body[stop:], known[0], {}, None, message_id, flags & _REQUEST == _REQUEST
    )


def _pub_loop(body: bytes | memoryview, in_place: bool) -> Pubs:
    """Every message of a PUB frame: ``body`` is a copy of it (``in_place`` false) or a view
    into the read buffer, from which each field and payload is copied out."""
    end = len(body)
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
            if block != len(last) or not (
                body[at : at + block] == last if in_place else body.startswith(last, at)  # type: ignore[union-attr]
            ):
                last = bytes(body[at : at + block])
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
            message_id = str(body[at : at + n_id], "utf-8")
            at += n_id
            key = None
            if flags & _HAS_KEY:
                key = str(body[at : at + n_key], "utf-8")
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
                    bytes(body[at:stop]) if in_place else body[at:stop],  # type: ignore[arg-type]
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
    return Pubs(tuple(messages), flags & _MORE == _MORE)


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
                frames.append(_pubs_copied(bytes(buffer[at + 5 : stop])))
            else:
                frames.append(_parse(kind, bytes(buffer[at + 5 : stop])))
            at = stop
        return frames, at, 0
