"""Frames of the direct-channel wire protocol, version 2 (see docs/direct-protocol.md).

Every frame is ``length:u32be | type:u8 | body``. :func:`encode` turns a frame into buffers
to write (a payload is never copied); :class:`FrameDecoder` turns received bytes back into
frames, checking each length against its limit before buffering a byte of the body. Anything
malformed raises ``ProtocolError``, and only that.

This module is the one door to the frame types: the rest of the channel imports them from here,
never from ``_types``, ``_encode`` or ``_decode``. ``REPLY_HEAD`` (length, type, seq and header
count of a REPLY) and ``SMALL_FRAME`` are there for the connection's read callback, which reads
a header-less REPLY in place.
"""

from __future__ import annotations

from meshbus.channels.direct._decode import FrameDecoder, lone_pub
from meshbus.channels.direct._encode import (
    encode,
    encode_one,
    encode_pub_parts,
    encode_pubs,
    encode_reply,
)
from meshbus.channels.direct._types import _REPLY_HEAD as REPLY_HEAD
from meshbus.channels.direct._types import _SMALL_FRAME as SMALL_FRAME
from meshbus.channels.direct._types import (
    DEFAULT_MAX_FRAME,
    MAGIC,
    MAX_PUBS,
    REFUSE_CLOSING,
    REFUSE_NO_SUBSCRIBER,
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
)

__all__ = [
    "DEFAULT_MAX_FRAME",
    "MAGIC",
    "MAX_PUBS",
    "REFUSE_CLOSING",
    "REFUSE_NO_SUBSCRIBER",
    "REPLY_HEAD",
    "SMALL_FRAME",
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
    "encode_pub_parts",
    "encode_pubs",
    "encode_reply",
    "lone_pub",
]
