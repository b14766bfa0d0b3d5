"""The one place this adapter reaches into nats-py's internals: for speed, and for one fix.

Every meshbus message carries its id in an ``mb-id`` header (an ordinary NATS header, so plain
NATS clients read meshbus messages and meshbus reads theirs). nats-py encodes and parses headers
field by field, and hands every message to a subscription through an ``asyncio.Queue`` and a
task per subscription; on small messages that costs more than the rest of the round trip.
``MeshClient`` keeps nats-py's wire protocol, connection handling and every public behaviour,
and overrides four private methods:

- ``_send_publish``: the header block written in one join (same checks as nats-py: token names,
  values stripped, line breaks replaced); ``send`` and ``send_id`` are ``publish`` for subjects
  meshbus has already checked, the latter writing an id-only message in one format;
- ``_process_headers``: a plain ``NATS/1.0`` header block parsed in one pass (status lines and
  anything unusual go to nats-py's own parser);
- ``_process_msg``: a subscription registered with ``deliver_directly`` gets the message in the
  read loop, without nats-py's ``Msg``, queue and task; its function may decline a message (a
  full buffer), which then takes nats-py's usual path, and so does every later message until
  that path is empty again, so order holds;
- ``_send_ping`` (the fix): nats-py 2.16 writes a flush's PING ahead of commands still waiting
  for its flusher task, so ``subscribe(); flush()`` could return before the server had the
  SUB. Pending commands are written first.

``FAST`` is false when the installed nats-py does not have these methods with the signatures
used here; the client then behaves exactly as nats-py's ``Client`` and nothing is delivered
directly.
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
)

from meshbus.headers import MESSAGE_ID

__all__ = ["FAST", "NATS_MSG_ID", "DirectDelivery", "MeshClient", "parse_header_block"]

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


def _signature(name: str) -> list[str]:
    method = getattr(Client, name, None)
    return list(inspect.signature(method).parameters) if callable(method) else []


FAST = (
    _signature("_send_publish")
    == ["self", "subject", "reply", "payload", "payload_size", "headers"]
    and _signature("_process_headers") == ["self", "headers"]
    and _signature("_process_msg") == ["self", "sid", "subject", "reply", "data", "headers"]
    and _signature("_send_command") == ["self", "cmd", "priority"]
    and _signature("_flush_pending") == ["self", "force_flush"]
)


def parse_header_block(raw: bytes) -> dict[str, str] | None:
    """The fields of a plain ``NATS/1.0`` header block, with nats-py's rules (names stripped,
    names with whitespace inside dropped, values stripped); ``None`` for a status line
    (``NATS/1.0 503``) or a block that is not UTF-8, which nats-py's parser then reads."""
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        return None
    if text.startswith(_ID_HEAD) and text.find("\r\n", _ID_HEAD_SIZE) == len(text) - 4:
        return {MESSAGE_ID: text[_ID_HEAD_SIZE:-4].strip()}  # only the id, as most carry
    if not text.startswith(_HEAD):
        return None
    out: dict[str, str] = {}
    for line in text[_HEAD_SIZE:].split("\r\n"):
        if line:
            name, sep, value = line.partition(":")
            if sep:
                name = name.strip()
                if name.isascii() and (not name or len(name.split()) == 1):
                    out[name] = value.strip()
    return out


_ATTRIBUTES = (
    "_status",
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
        self._heads: dict[tuple[str, int, int], bytes] = {}

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
        if self._can_write:
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
                cached = f"HPUB {subject}  {block} {block + size}\r\n{_ID_LINE}".encode()
                if len(self._heads) >= 4096:
                    self._heads.clear()
                self._heads[key] = cached
            command = b"".join((cached, message_id.encode(), b"\r\n\r\n", payload, b"\r\n"))
        stats = self.stats
        stats["out_msgs"] += 1
        stats["out_bytes"] += size
        await self._send_command(command)
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
        await self._send_command(b"".join((line, block, payload, b"\r\n")))
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

    async def _process_msg(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
    ) -> None:
        direct = self._direct.get(sid)
        if direct is not None:
            sub, deliver = direct
            behind = self._behind
            if behind and sid in behind and not sub.pending_msgs:
                behind.discard(sid)
            if not behind or sid not in behind:
                fields = {} if headers is None else parse_header_block(headers)
                if fields is not None and deliver(subject.decode(), reply.decode(), data, fields):
                    stats = self.stats
                    stats["in_msgs"] += 1
                    stats["in_bytes"] += len(data)
                    sub._received += 1
                    return
                # Declined, a status line or not UTF-8: this message takes nats-py's path, and
                # later ones follow it there until that queue is empty, so order holds.
                self._behind.add(sid)
        # nats-py annotates headers as bytes; its parser passes None for a message without.
        await super()._process_msg(sid, subject, reply, data, headers)  # type: ignore[arg-type]
