"""The frames of the direct-channel wire protocol, version 2, and the constants of their
layout: what ``_encode`` writes and ``_decode`` reads (the public names are in ``frames``)."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum

from meshbus.transport import Envelope

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
_REPLY_HEAD = struct.Struct(">IBQH")  # a REPLY's length, type, seq and header count
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
_MORE = 4  # on a frame's last message: the frame is not the last of its write (see docs)
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
    """A PUB frame: messages with consecutive sequence numbers, in publish order. ``more``:
    the publisher sends more frames right after this one (its last message has the MORE
    flag), so the listener may leave this frame's ACCEPT to theirs."""

    messages: tuple[Pub, ...]
    more: bool = False


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
