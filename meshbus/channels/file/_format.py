"""Message files and their names: the byte format of one message on disk (layout version 1).

A message file is a 32-byte fixed header, a UTF-8 JSON metadata block, then the payload::

    offset  size  field
    0       4     magic b"MBMF"
    4       1     format version (1)
    5       3     reserved, zero
    8       4     metadata length (u32, little-endian)
    12      4     CRC-32 of the metadata
    16      8     payload length (u64, little-endian)
    24      4     CRC-32 of the payload
    28      4     reserved, zero
    32      ...   metadata: {"subject": str, "id": str, "key": str|null, "headers": {str: str}}
    ...     ...   payload

The file's size must be exactly ``32 + metadata length + payload length``; a file that is
shorter, longer, or whose checksums do not match is corrupt.
"""

from __future__ import annotations

import json
import os
import re
import stat
import struct
import zlib

from meshbus.errors import CorruptMessage
from meshbus.transport import Envelope

__all__ = [
    "FORMAT_VERSION",
    "HEADER",
    "MAGIC",
    "CorruptMessage",
    "encode_header",
    "message_name",
    "parse_name",
    "read_message",
    "read_small_message",
]

MAGIC = b"MBMF"
FORMAT_VERSION = 1
HEADER = struct.Struct("<4sB3xII QI4x")
# A queued message: <stamp:16 hex>.<writer id>.<earlier deliveries>
_NAME = re.compile(r"([0-9a-f]{16})\.([A-Za-z0-9_-]{1,80})\.([0-9]{1,9})")
_SMALL_READ = 1 << 16


def encode_header(envelope: Envelope) -> bytes:
    """The fixed header and metadata block of ``envelope``'s file (the payload follows)."""
    meta = json.dumps(
        {
            "subject": envelope.subject,
            "id": envelope.id,
            "key": envelope.key,
            "headers": envelope.headers,
        },
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode()
    data = envelope.data
    return (
        HEADER.pack(MAGIC, FORMAT_VERSION, len(meta), zlib.crc32(meta), len(data), zlib.crc32(data))
        + meta
    )


def message_name(stamp: int, writer: str, deliveries: int) -> str:
    """The file name of a queued message: its order stamp, writer and earlier deliveries."""
    return f"{stamp:016x}.{writer}.{deliveries}"


def parse_name(name: str) -> tuple[str, int] | None:
    """``(stem, deliveries)`` of a message file name (stem = stamp and writer), else ``None``."""
    match = _NAME.fullmatch(name)
    if match is None:
        return None
    return f"{match[1]}.{match[2]}", int(match[3])


def _read_exact(fd: int, size: int) -> bytes:
    data = os.read(fd, size)
    if len(data) == size or not data:
        return data
    parts = [data]
    got = len(data)
    while got < size:
        more = os.read(fd, size - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def read_message(path: str) -> tuple[dict[str, object], bytes]:
    """Read and check a message file: ``(metadata, payload)``, or raise ``CorruptMessage``.

    Opens without blocking (a FIFO in the tree cannot hang a reader) and refuses anything that
    is not a regular file. The payload is read with one allocation of its size.
    """
    found = read_small_message(path, None)
    assert found is not None
    return found


def read_small_message(path: str, limit: int | None) -> tuple[dict[str, object], bytes] | None:
    """``read_message``, but ``None`` without reading when the file is larger than ``limit``
    bytes (so that a caller on an event loop can read large ones in a thread instead)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise CorruptMessage(f"{path} is not a regular file")
        if limit is not None and info.st_size > limit:
            return None
        head = _read_exact(fd, min(info.st_size, _SMALL_READ))
        if len(head) < HEADER.size:
            raise CorruptMessage(f"{path} is truncated ({info.st_size} bytes, no full header)")
        magic, version, meta_len, meta_crc, size, crc = HEADER.unpack_from(head)
        if magic != MAGIC:
            raise CorruptMessage(f"{path} is not a meshbus message file (magic {magic!r})")
        if version != FORMAT_VERSION:
            raise CorruptMessage(f"{path} has message format {version}, this reader knows 1")
        total = HEADER.size + meta_len + size
        if info.st_size != total:
            raise CorruptMessage(
                f"{path} is {info.st_size} bytes, its header says {total}: truncated or padded"
            )
        start = HEADER.size + meta_len
        if len(head) >= start:
            meta = head[HEADER.size : start]
        else:
            meta = head[HEADER.size :] + _read_exact(fd, start - len(head))
        if len(head) >= total:
            payload = head[start:total]
        elif len(head) == start:
            payload = _read_exact(fd, size)
        else:
            os.lseek(fd, start, os.SEEK_SET)
            payload = _read_exact(fd, size)
    finally:
        os.close(fd)
    if zlib.crc32(meta) != meta_crc or len(payload) != size or zlib.crc32(payload) != crc:
        raise CorruptMessage(f"{path} fails its checksum")
    try:
        fields = json.loads(meta)
    except ValueError as exc:
        raise CorruptMessage(f"{path} has unreadable metadata: {exc}") from exc
    if not isinstance(fields, dict) or not isinstance(fields.get("subject"), str):
        raise CorruptMessage(f"{path} has metadata without a subject")
    headers = fields.get("headers")
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise CorruptMessage(f"{path} has headers that are not str -> str")
    return fields, payload
