"""The DNS wire format (RFC 1035, RFC 3596), as much as an address lookup needs.

Queries are built for one name and one type (A or AAAA). Responses are parsed strictly: every
offset is bounds-checked, compression pointers must point backwards (so they cannot loop), and
anything that does not fit raises :class:`~meshbus.errors.ProtocolError` — never another
exception, whatever the bytes.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from meshbus.errors import ProtocolError

__all__ = [
    "CLASS_IN",
    "RCODE_NAMES",
    "TYPE_A",
    "TYPE_AAAA",
    "TYPE_CNAME",
    "Response",
    "build_query",
    "encode_name",
    "parse_response",
]

TYPE_A = 1
TYPE_CNAME = 5
TYPE_AAAA = 28
CLASS_IN = 1

RCODE_NAMES = {
    0: "NOERROR",
    1: "FORMERR",
    2: "SERVFAIL",
    3: "NXDOMAIN",
    4: "NOTIMP",
    5: "REFUSED",
}

_HEADER = struct.Struct("!HHHHHH")
_RR_FIXED = struct.Struct("!HHIH")  # type, class, ttl, rdlength
_MAX_NAME = 255
_MAX_LABEL = 63


@dataclass(frozen=True, slots=True)
class Response:
    """The parts of a DNS response an address lookup uses.

    ``addresses`` holds the A/AAAA records (of ``qtype``) that belong to the question's name,
    following CNAME records in the answer section; ``truncated`` is the TC flag (the answer did
    not fit in one UDP datagram, ask again over TCP).
    """

    ident: int
    rcode: int
    truncated: bool
    qname: str
    qtype: int
    addresses: tuple[str, ...]


def encode_name(name: str) -> bytes:
    """Encode a domain name as DNS labels; ``ValueError`` for a name DNS cannot carry."""
    name = name.rstrip(".")
    out = bytearray()
    if name:
        for label in name.split("."):
            raw = label.encode("idna") if not label.isascii() else label.encode("ascii")
            if not 0 < len(raw) <= _MAX_LABEL:
                raise ValueError(f"bad label {label!r} in DNS name {name!r}")
            out.append(len(raw))
            out += raw
    out.append(0)
    if len(out) > _MAX_NAME:
        raise ValueError(f"DNS name {name!r} is longer than {_MAX_NAME} bytes")
    return bytes(out)


def build_query(ident: int, name: str, qtype: int) -> bytes:
    """A standard query (RD set) for ``name`` of type ``qtype``, class IN."""
    header = _HEADER.pack(ident & 0xFFFF, 0x0100, 1, 0, 0, 0)
    return header + encode_name(name) + struct.pack("!HH", qtype, CLASS_IN)


def _read_name(data: bytes, offset: int) -> tuple[str, int]:
    """Read a possibly compressed name at ``offset``; return it (lower case) and the offset
    just past it in the original position."""
    labels: list[str] = []
    end: int | None = None
    length = 0
    pos = offset
    while True:
        if pos >= len(data):
            raise ProtocolError("DNS name runs past the end of the message")
        size = data[pos]
        if size & 0xC0 == 0xC0:
            if pos + 1 >= len(data):
                raise ProtocolError("DNS compression pointer cut short")
            target = ((size & 0x3F) << 8) | data[pos + 1]
            if end is None:
                end = pos + 2
            if target >= pos:
                raise ProtocolError("DNS compression pointer does not point backwards")
            pos = target
            continue
        if size & 0xC0:
            raise ProtocolError(f"unknown DNS label type 0x{size & 0xC0:02x}")
        if size == 0:
            if end is None:
                end = pos + 1
            return ".".join(labels), end
        if pos + 1 + size > len(data):
            raise ProtocolError("DNS label runs past the end of the message")
        length += size + 1
        if length > _MAX_NAME:
            raise ProtocolError("DNS name longer than 255 bytes")
        raw = data[pos + 1 : pos + 1 + size]
        labels.append(raw.decode("ascii", "backslashreplace").lower())
        pos += 1 + size


def parse_response(data: bytes) -> Response:
    """Parse a DNS response; :class:`~meshbus.errors.ProtocolError` if it is malformed.

    Only the header, the (single) question and the answer section are read. A truncated
    response (TC set) is returned without its answers: they may be cut anywhere.
    """
    data = bytes(data)
    if len(data) < _HEADER.size:
        raise ProtocolError(f"DNS message of {len(data)} bytes is shorter than its header")
    ident, flags, qdcount, ancount, _nscount, _arcount = _HEADER.unpack_from(data)
    if not flags & 0x8000:
        raise ProtocolError("DNS message is a query, not a response")
    if (flags >> 11) & 0xF != 0:
        raise ProtocolError(f"DNS response has opcode {(flags >> 11) & 0xF}, not QUERY")
    if qdcount != 1:
        raise ProtocolError(f"DNS response carries {qdcount} questions, not one")
    rcode = flags & 0xF
    truncated = bool(flags & 0x0200)
    qname, pos = _read_name(data, _HEADER.size)
    if pos + 4 > len(data):
        raise ProtocolError("DNS question cut short")
    qtype, _qclass = struct.unpack_from("!HH", data, pos)
    pos += 4
    if truncated:
        return Response(ident, rcode, True, qname, qtype, ())
    owners = {qname}
    found: list[str] = []
    for _ in range(ancount):
        owner, pos = _read_name(data, pos)
        if pos + _RR_FIXED.size > len(data):
            raise ProtocolError("DNS resource record cut short")
        rtype, rclass, _ttl, rdlength = _RR_FIXED.unpack_from(data, pos)
        pos += _RR_FIXED.size
        if pos + rdlength > len(data):
            raise ProtocolError("DNS record data runs past the end of the message")
        rdata_at = pos
        pos += rdlength
        if rclass != CLASS_IN or owner not in owners:
            continue
        if rtype == TYPE_CNAME:
            target, after = _read_name(data, rdata_at)
            if after != pos:
                raise ProtocolError("DNS CNAME record data has the wrong length")
            owners.add(target)
        elif rtype == qtype == TYPE_A:
            if rdlength != 4:
                raise ProtocolError(f"DNS A record of {rdlength} bytes")
            found.append(str(ipaddress.IPv4Address(data[rdata_at:pos])))
        elif rtype == qtype == TYPE_AAAA:
            if rdlength != 16:
                raise ProtocolError(f"DNS AAAA record of {rdlength} bytes")
            found.append(str(ipaddress.IPv6Address(data[rdata_at:pos])))
    return Response(ident, rcode, False, qname, qtype, tuple(found))
