"""Encoding of direct-protocol frames (public through ``frames``)."""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence

from meshbus.channels.direct._types import (
    _ACCEPT,
    _HAS_KEY,
    _HEAD,
    _MORE,
    _MSG_HEAD,
    _ONE_FRAME,
    _PUB,
    _PUB_HEAD,
    _REPLY,
    _REPLY_HEAD,
    _REQUEST,
    _SEQ_FRAME,
    _U8,
    _U16,
    _U32,
    _U64,
    DEFAULT_MAX_FRAME,
    MAGIC,
    MAX_PUBS,
    Accept,
    Bye,
    Credit,
    Frame,
    FrameType,
    Interest,
    Ping,
    Pong,
    Pub,
    Pubs,
    Refuse,
    Reply,
    Uninterest,
)
from meshbus.errors import ProtocolError
from meshbus.transport import Envelope


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
    more: bool = False,
) -> tuple[bytes, int]:
    """One PUB frame for ``items[start:]`` — each ``(envelope, targets, request)`` — numbered
    from ``first_seq``: as many as fit in ``limit`` bytes (at least one) and ``MAX_PUBS``.
    Return the frame and how many messages it carries.

    The frame's last message gets the MORE flag when some of ``items`` are left for the frames
    after it, or when ``more`` says that further frames follow at once: whoever writes it must
    then write those without waiting for this frame's ACCEPT (which the listener may hold back
    until theirs)."""
    parts, count = encode_pub_parts(first_seq, items, start, limit, more)
    return b"".join(parts), count


def encode_pub_parts(
    first_seq: int,
    items: Sequence[tuple[Envelope, tuple[int, ...], bool]],
    start: int = 0,
    limit: int = DEFAULT_MAX_FRAME,
    more: bool = False,
) -> tuple[list[bytes], int]:
    """``encode_pubs``, the frame left in the pieces that make it up, in order (payloads
    among them, not copied): for a writer that can send them as they are."""
    parts: list[bytes] = [b""]
    pack = _MSG_HEAD.pack
    head_at = 0  # where the last message's head is in parts
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
            head_at = len(parts)
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
            head_at = len(parts)
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
    if at > start and (more or at < len(items)):
        head = parts[head_at]
        parts[head_at] = bytes((head[0] | _MORE,)) + head[1:]
    parts[0] = _HEAD.pack(size, _PUB) + _PUB_HEAD.pack(first_seq, at - start)
    return parts, at - start


_request_blocks: dict[str, tuple[tuple[int, ...], bytes, int, int, int]] = {}
"""Per subject: the targets last sent with it, their encoded form followed by the subject's,
the subject's length in bytes, the number of targets, and the frame's length less the message
id and payload."""


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
        known = _request_blocks[subject] = (
            targets,
            block,
            len(raw_subject),
            len(targets),
            _ONE_FRAME.size - 4 + len(block),
        )
    _, block, n_subject, n_targets, size = known
    message_id, data = envelope.id.encode(), envelope.data
    n_id, n_data = len(message_id), len(data)
    if n_id > 0xFF:
        return encode_pubs(seq, [(envelope, targets, request)], limit=1 << 62)[0]  # raises
    head = _ONE_FRAME.pack(
        size + n_id + n_data,
        _PUB,
        seq,
        1,
        _REQUEST if request else 0,
        n_subject,
        n_id,
        n_targets,
        0,
        0,
        n_data,
    )
    return b"".join((head, block, message_id, data))


def encode_reply(seq: int, data: bytes, headers: dict[str, str]) -> bytes:
    """A REPLY frame, in one piece."""
    if not headers:
        return _REPLY_HEAD.pack(11 + len(data), _REPLY, seq, 0) + data
    raw = _headers(headers)
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
