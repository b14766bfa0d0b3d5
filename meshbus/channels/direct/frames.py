"""Frames of the direct-channel wire protocol, version 2 (see docs/direct-protocol.md).

Every frame is ``length:u32be | type:u8 | body``. :func:`encode` turns a frame into buffers
to write (a payload is never copied); :class:`FrameDecoder` turns received bytes back into
frames, checking each length against its limit before buffering a byte of the body. Anything
malformed raises ``ProtocolError``, and only that.
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
