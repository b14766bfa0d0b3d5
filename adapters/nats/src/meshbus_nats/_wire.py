"""The one place this adapter reaches into nats-py's internals: for speed, and for one fix.

Every meshbus message carries its id in an ``mb-id`` header (an ordinary NATS header, so plain
NATS clients read meshbus messages and meshbus reads theirs). nats-py encodes and parses headers
field by field, and hands every message to a subscription through an ``asyncio.Queue`` and a
task per subscription; on small messages that costs more than the rest of the round trip.
``MeshClient`` keeps nats-py's wire protocol, connection handling and every public behaviour,
and overrides four private methods and its protocol parser:

- ``_send_publish``: the header block written in one join (same checks as nats-py: token names,
  values stripped, line breaks replaced); ``send`` and ``send_id`` are ``publish`` for subjects
  meshbus has already checked, the latter writing an id-only message in one format;
- ``_process_headers``: a plain ``NATS/1.0`` header block parsed in one pass (status lines and
  anything unusual go to nats-py's own parser);
- ``_process_msg``: a subscription registered with ``deliver_directly`` gets the message in the
  read loop, without nats-py's ``Msg``, queue and task; its function may decline a message (a
  full buffer), which then takes nats-py's usual path, and so does every later message until
  that path is empty again, so order holds;
- the parser (``_Parser``): ``MSG`` and ``HMSG`` lines are read by offsets in each read,
  without nats-py's regular expressions and per-message buffer deletions, and messages of
  direct subscriptions are handed over without a coroutine each; every other line goes to
  nats-py's parser. ``parse_header_block`` reads header blocks exactly as nats-py does
  (``tests/nats/test_nats_parser.py`` checks both against nats-py on generated input);
- ``_send_ping`` (the fix): nats-py 2.16 writes a flush's PING ahead of commands still waiting
  for its flusher task, so ``subscribe(); flush()`` could return before the server had the
  SUB. Pending commands are written first.

``FAST`` (``FAST_READ`` for the parser) is false when the installed nats-py does not have
these methods with the signatures used here, and under ``MESHBUS_SAFE=1``
(``meshbus.fastpath``); the client then behaves exactly as nats-py's ``Client`` and nothing is
delivered directly. The fix to ``_send_ping`` is not a shortcut but what makes ``flush()``
mean what it says, so it stays on under ``MESHBUS_SAFE=1``, wherever the attributes it needs
are there.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Callable
from typing import Any

from nats.aio.client import Client
from nats.aio.subscription import Subscription
from nats.errors import (
    BadHeaderError,
    ConnectionClosedError,
    ConnectionDrainingError,
    MaxPayloadError,
    OutboundBufferLimitError,
    ProtocolError,
)
from nats.protocol import parser as nats_parser

from meshbus.fastpath import enabled
from meshbus.headers import MESSAGE_ID
from meshbus.kit import BoundedCache

__all__ = [
    "FAST",
    "FAST_READ",
    "NATS_MSG_ID",
    "DirectDelivery",
    "MeshClient",
    "parse_header_block",
    "split_message",
]

DirectDelivery = Callable[[str, str, bytes, dict[str, str]], bool]
"""``(subject, reply, data, headers) -> taken``; called in the connection's read loop."""

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_NEWLINES = str.maketrans({"\r": " ", "\n": " "})
NATS_MSG_ID = "Nats-Msg-Id"
"""JetStream's de-duplication header; meshbus sets it to the message id."""
_CONNECTED = Client.CONNECTED
_HEAD = "NATS/1.0\r\n"
_HEAD_SIZE = len(_HEAD)
_ID_LINE = f"{_HEAD}{MESSAGE_ID}: "
_ID_BLOCK_SIZE = len(_ID_LINE) + 4
_DEDUP_BLOCK_SIZE = _ID_BLOCK_SIZE + len(NATS_MSG_ID) + 4
_ID_HEAD = f"{_HEAD}{MESSAGE_ID}:"
_ID_HEAD_SIZE = len(_ID_HEAD)
_ID_HEAD_BYTES = _ID_HEAD.encode()
_HEAD_BYTES = _HEAD.encode()
_ASCII_SPACE = b"\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f "
"""What ``str.isspace`` calls whitespace among ASCII characters (nats-py's test for names)."""


def _signature(name: str) -> list[str]:
    method = getattr(Client, name, None)
    return list(inspect.signature(method).parameters) if callable(method) else []


FAST = enabled(
    _signature("_send_publish")
    == ["self", "subject", "reply", "payload", "payload_size", "headers"]
    and _signature("_process_headers") == ["self", "headers"]
    and _signature("_process_msg") == ["self", "sid", "subject", "reply", "data", "headers"]
    and _signature("_send_command") == ["self", "cmd", "priority"]
    and _signature("_flush_pending") == ["self", "force_flush"]
)


def parse_header_block(raw: bytes) -> dict[str, str] | None:
    """The fields of a plain ``NATS/1.0`` header block, exactly as nats-py's
    ``_parse_header_lines`` reads them (names and values stripped of ASCII whitespace, names
    that are not ASCII or have whitespace inside dropped, the last of a repeated name kept);
    ``None`` for a status line (``NATS/1.0 503``), anything not starting ``NATS/1.0``, or a
    value that is not UTF-8, which nats-py's own parser then reads.

    A block of the id alone, as meshbus writes most messages, takes a shorter path."""
    if raw.startswith(_ID_HEAD_BYTES) and raw.find(b"\r\n", _ID_HEAD_SIZE) == len(raw) - 4:
        try:
            return {MESSAGE_ID: raw[_ID_HEAD_SIZE:-4].strip().decode()}
        except UnicodeDecodeError:
            return None
    if not raw.startswith(_HEAD_BYTES):
        return None
    out: dict[str, str] = {}
    try:
        for line in raw[_HEAD_SIZE:].split(b"\r\n"):
            name, sep, value = line.partition(b":")
            if sep:
                name = name.strip()
                if name.isascii() and len(name.translate(None, _ASCII_SPACE)) == len(name):
                    out[name.decode()] = value.strip().decode()
    except UnicodeDecodeError:
        return None
    return out


_AWAITING_CONTROL_LINE = getattr(nats_parser, "AWAITING_CONTROL_LINE", None)
FAST_READ = enabled(
    _AWAITING_CONTROL_LINE is not None
    and _signature("_process_msg") == ["self", "sid", "subject", "reply", "data", "headers"]
    and list(inspect.signature(nats_parser.Parser.parse).parameters) == ["self", "data"]
    and list(inspect.signature(nats_parser.Parser.reset).parameters) == ["self"]
)
"""Whether nats-py's parser is the one ``_Parser`` extends (and fast paths are allowed)."""


def split_message(line: bytes) -> tuple[bytes, int, bytes, int, int] | None:
    """The arguments of a ``MSG``/``HMSG`` control line (without its CRLF), as nats-py's
    parser reads them: ``(subject, sid, reply, header size, total size)``; ``None`` for any
    other line. Raises ``ProtocolError`` for a malformed one."""
    if line.startswith(b"HMSG"):
        op = 4
        args = line[4:].split()
        if len(args) == 4:
            subject, sid, headers, total = args
            reply = b""
        elif len(args) == 5:
            subject, sid, reply, headers, total = args
        else:
            raise ProtocolError("nats: malformed MSG")
    elif line.startswith(b"MSG"):
        op = 3
        args = line[3:].split()
        if len(args) == 3:
            subject, sid, total = args
            reply = b""
        elif len(args) == 4:
            subject, sid, reply, total = args
        else:
            raise ProtocolError("nats: malformed MSG")
        headers = b"0"
    else:
        return None
    if not (
        line[op : op + 1].isspace()
        and line[-1:].isdigit()
        and sid.isdigit()
        and headers.isdigit()
        and total.isdigit()
    ):
        raise ProtocolError("nats: malformed MSG")
    header_size, size = int(headers), int(total)
    if header_size > size:
        raise ProtocolError("nats: malformed MSG")
    return subject, int(sid), reply, header_size, size


class _Parser(nats_parser.Parser):
    """nats-py's protocol parser, reading ``MSG`` and ``HMSG`` itself: it walks each read by
    offsets (nats-py deletes every line and payload from the front of its buffer), tries no
    regular expressions, and hands messages of direct subscriptions over without a coroutine
    per message. Every other line (``PING``, ``INFO``, ``-ERR``...) goes to nats-py's own
    parser, one line at a time."""

    nc: MeshClient

    def reset(self) -> None:
        super().reset()
        self.wanted = 0  # bytes the buffered partial message needs before another look
        self.generation = getattr(self, "generation", 0) + 1

    async def parse(self, data: bytes = b"") -> None:
        if self.state != _AWAITING_CONTROL_LINE:  # left so by nats-py's own parse
            await super().parse(data)
            return
        if self.buf:
            self.buf.extend(data)
            if len(self.buf) < self.wanted:
                return
            data = bytes(self.buf)
        self.buf = bytearray()
        self.wanted = 0
        nc = self.nc
        take = nc._take_direct
        generation = self.generation
        end = len(data)
        pos = 0
        while pos < end:
            eol = data.find(b"\r\n", pos)
            if eol < 0:
                break
            # The usual line, HMSG <subject> <sid> [<reply>] <header size> <total size>, read
            # here; anything else (MSG, other operations, malformed) by split_message.
            args = data[pos + 5 : eol].split() if data.startswith(b"HMSG ", pos) else ()
            if len(args) == 4:
                subject, sid_digits, header_digits, total = args
                reply = b""
            elif len(args) == 5:
                subject, sid_digits, reply, header_digits, total = args
            else:
                sid_digits = b""
            if (
                sid_digits
                and (sid_digits + header_digits + total).isdigit()
                and 48 <= data[eol - 1] <= 57  # no whitespace before the CRLF
            ):
                sid, header_size, size = int(sid_digits), int(header_digits), int(total)
                if header_size > size:
                    raise ProtocolError("nats: malformed MSG")
            else:
                message = split_message(data[pos:eol])
                if message is None:  # another operation: nats-py's parser reads the line
                    line = data[pos : eol + 2]
                    pos = eol + 2
                    await super().parse(line)
                    if self.generation != generation:
                        return  # reset (a reconnect): the rest belonged to the old connection
                    if self.buf or self.state != _AWAITING_CONTROL_LINE:
                        raise ProtocolError("nats: unknown protocol")
                    continue
                subject, sid, reply, header_size, size = message
            start = eol + 2
            stop = start + size
            if stop + 2 > end:
                self.wanted = stop + 2 - pos
                break
            pos = stop + 2
            if header_size:
                headers: bytes | None = data[start : start + header_size]
                payload = data[start + header_size : stop]
            else:
                headers, payload = None, data[start:stop]
            if not take(sid, subject, reply, payload, headers):
                await nc._queue_msg(sid, subject, reply, payload, headers)
                if self.generation != generation:
                    return
        if pos < end:
            self.buf = bytearray(memoryview(data)[pos:])


_ATTRIBUTES = (
    "_status",
    "_pending",
    "_flush_queue",
    "_pending_data_size",
    "_max_pending_size",
    "_max_payload",
    "stats",
)


class MeshClient(Client):
    """nats-py's ``Client`` with the faster header and delivery paths described above."""

    def __init__(self) -> None:
        super().__init__()
        self.fast = FAST and all(hasattr(self, name) for name in _ATTRIBUTES)
        self._can_write = _signature("_send_ping") == ["self", "future"] and all(
            hasattr(self, name)
            for name in ("_pending", "_pending_data_size", "_transport", "_status")
        )
        """Whether the faster paths are on (see ``FAST``)."""
        self._direct: dict[int, tuple[Subscription, DirectDelivery]] = {}
        self._behind: set[int] = set()
        self._good_names: set[str] = set()
        self._heads: BoundedCache[tuple[str, int, int], bytes] = BoundedCache()
        if self.fast and FAST_READ and hasattr(self, "_ps"):
            self._ps = _Parser(self)

    # -- sending ---------------------------------------------------------------------------

    def _header_block(self, headers: dict[str, str]) -> bytes:
        good = self._good_names
        parts = ["NATS/1.0\r\n"]
        for name, value in headers.items():
            if name not in good:
                name = name.strip()
                if not name:
                    continue
                if not _TOKEN.fullmatch(name):
                    raise BadHeaderError(name)
                if len(good) < 1024:
                    good.add(name)
            if "\r" in value or "\n" in value:
                value = value.translate(_NEWLINES)
            parts += (name, ": ", value.strip(), "\r\n")
        parts.append("\r\n")
        return "".join(parts).encode()

    def _check_send(self, size: int) -> None:
        """nats-py's checks before a publish (the connection state, the payload size)."""
        if self._status != _CONNECTED:
            if self.is_closed:
                raise ConnectionClosedError
            if self.is_draining_pubs:
                raise ConnectionDrainingError
            if not self.is_connected and (
                self._max_pending_size <= 0
                or size + self._pending_data_size > self._max_pending_size
            ):
                raise OutboundBufferLimitError
        if size > self._max_payload:
            raise MaxPayloadError

    async def send(
        self, subject: str, payload: bytes, headers: dict[str, str] | None, reply: str = ""
    ) -> None:
        """``publish`` for subjects meshbus has already checked: nats-py's checks on the
        connection and the payload size, the header block in one join."""
        if not self.fast:
            await self.publish(subject, payload, reply, headers)
            return
        size = len(payload)
        self._check_send(size)
        await self._send_publish(subject, reply, payload, size, headers)

    async def send_now(
        self, subject: str, payload: bytes, headers: dict[str, str] | None, reply: str = ""
    ) -> None:
        """``send``, then write what is pending at once instead of on the flusher task's next
        turn: one loop iteration less for a message someone waits for (a request, a reply)."""
        await self.send(subject, payload, headers, reply)
        if self.fast and self._can_write:
            self._write_pending()

    def _write_pending(self) -> None:
        transport = self._transport
        if self._pending and self._status == _CONNECTED and transport is not None:
            transport.writelines(self._pending[:])
            self._pending = []
            self._pending_data_size = 0

    async def send_id(self, subject: str, payload: bytes, message_id: str, reply: str = "") -> None:
        """``send`` of a message whose only header is its meshbus id, as most are. With a
        ``reply`` (a JetStream publish awaiting its PubAck) the id is also the message's
        ``Nats-Msg-Id``. Core publishes take their command line from a cache."""
        if not self.fast or not message_id.isascii():  # sizes below count characters
            headers = {MESSAGE_ID: message_id}
            if reply:
                headers[NATS_MSG_ID] = message_id
            await self.send(subject, payload, headers, reply)
            return
        size = len(payload)
        if self._status != _CONNECTED or size > self._max_payload:
            self._check_send(size)
        if reply:
            block = 2 * len(message_id) + _DEDUP_BLOCK_SIZE
            head = (
                f"HPUB {subject} {reply} {block} {block + size}\r\n{_ID_LINE}{message_id}"
                f"\r\n{NATS_MSG_ID}: {message_id}\r\n\r\n"
            ).encode()
            command = b"".join((head, payload, b"\r\n"))
        else:
            key = (subject, len(message_id), size)
            cached = self._heads.get(key)
            if cached is None:
                block = len(message_id) + _ID_BLOCK_SIZE
                cached = self._heads.put(
                    key, f"HPUB {subject}  {block} {block + size}\r\n{_ID_LINE}".encode()
                )
            command = b"".join((cached, message_id.encode(), b"\r\n\r\n", payload, b"\r\n"))
        stats = self.stats
        stats["out_msgs"] += 1
        stats["out_bytes"] += size
        # nats-py's _send_command, inlined (one coroutine less per message)
        self._pending.append(command)
        self._pending_data_size += len(command)
        if 0 < self._max_pending_size < self._pending_data_size:
            await self._flush_pending(force_flush=True)
        if self._flush_queue is not None and self._flush_queue.empty():
            await self._flush_pending()

    async def _send_publish(
        self,
        subject: str,
        reply: str,
        payload: bytes,
        payload_size: int,
        headers: dict[str, Any] | None,
    ) -> None:
        if headers is None or not self.fast:
            await super()._send_publish(subject, reply, payload, payload_size, headers)
            return
        block = self._header_block(headers)
        size = len(block)
        line = f"HPUB {subject} {reply} {size} {size + payload_size}\r\n".encode()
        stats = self.stats
        stats["out_msgs"] += 1
        stats["out_bytes"] += payload_size
        command = b"".join((line, block, payload, b"\r\n"))
        # nats-py's _send_command, inlined (one coroutine less per message)
        self._pending.append(command)
        self._pending_data_size += len(command)
        if 0 < self._max_pending_size < self._pending_data_size:
            await self._flush_pending(force_flush=True)
        if self._flush_queue is not None and self._flush_queue.empty():
            await self._flush_pending()

    async def _send_ping(self, future: asyncio.Future[bool] | None = None) -> None:
        # nats-py writes the PING straight to the socket, ahead of commands still waiting for
        # its flusher task; the PONG then proves nothing about them, and ``flush()`` after
        # ``subscribe()`` can return before the server has the SUB (a request from another
        # connection then meets "no responders"). Write what is pending first, as the
        # flusher would.
        if self._can_write:
            self._write_pending()
        await super()._send_ping(future)

    # -- receiving -------------------------------------------------------------------------

    def deliver_directly(self, sub: Subscription, deliver: DirectDelivery) -> None:
        """Hand ``sub``'s messages to ``deliver`` in the read loop (see the module docstring).
        ``sub`` keeps its callback for the messages ``deliver`` declines."""
        if self.fast and hasattr(sub, "_id") and hasattr(sub, "_received"):
            self._direct[sub._id] = (sub, deliver)

    def forget_direct(self, sub: Subscription) -> None:
        """Stop delivering ``sub``'s messages directly."""
        sid: int = getattr(sub, "_id", -1)
        self._direct.pop(sid, None)
        self._behind.discard(sid)

    async def _process_headers(self, headers: bytes | None) -> dict[str, str] | None:
        if self.fast and headers and len(headers) > _HEAD_SIZE + 2:
            parsed = parse_header_block(headers)
            if parsed is not None:
                return parsed or None
        result: dict[str, str] | None = await super()._process_headers(headers)
        return result

    def _take_direct(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
    ) -> bool:
        """Deliver a message of a direct subscription in the read loop; false when it takes
        nats-py's path instead (no direct subscription, declined, a status line, not UTF-8,
        or earlier messages of the subscription are still on that path)."""
        direct = self._direct.get(sid)
        if direct is None:
            return False
        sub, deliver = direct
        behind = self._behind
        if behind and sid in behind:
            if sub.pending_msgs:
                return False  # later ones follow the declined one, so order holds
            behind.discard(sid)
        fields: dict[str, str] | None
        if headers is None:
            fields = {}
        elif (
            headers.startswith(_ID_HEAD_BYTES)
            and headers.find(b"\r\n", _ID_HEAD_SIZE) == len(headers) - 4
            and headers.isascii()
        ):  # parse_header_block's first case, inlined
            fields = {MESSAGE_ID: headers[_ID_HEAD_SIZE:-4].strip().decode()}
        else:
            fields = parse_header_block(headers)
        if fields is not None and deliver(subject.decode(), reply.decode(), data, fields):
            stats = self.stats
            stats["in_msgs"] += 1
            stats["in_bytes"] += len(data)
            sub._received += 1
            return True
        behind.add(sid)
        return False

    async def _process_msg(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
    ) -> None:
        if not self._take_direct(sid, subject, reply, data, headers):
            await self._queue_msg(sid, subject, reply, data, headers)

    async def _queue_msg(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
    ) -> None:
        """nats-py's own delivery (its ``Msg``, the subscription's queue and task)."""
        # nats-py annotates headers as bytes; its parser passes None for a message without.
        await super()._process_msg(sid, subject, reply, data, headers)  # type: ignore[arg-type]
