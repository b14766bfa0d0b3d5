"""What this client asks and waits to hear back about: requests, and JetStream publishes,
which are requests too (the server answers each with a PubAck).

Each kind has one wildcard inbox of the connection, ``<inbox>.*``, and each message that waits
for an answer gets a token of its own under it. Answers come straight from the connection's
read loop (``MeshClient.deliver_directly``); status messages (no stream, no responders) take
nats-py's path, which reads status lines."""

from __future__ import annotations

import asyncio
import json

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg

from meshbus.headers import MESSAGE_ID
from meshbus.message import Message
from meshbus_nats._wire import MeshClient

__all__ = ["Batch", "Item", "NoStream", "PubAcks", "Replies"]

_NO_RESPONDERS = "503"


class NoStream(Exception):
    """JetStream answered a publish with 503: no stream (yet), e.g. just after a restart."""


Item = tuple[str, bytes, dict[str, str] | None, str]
"""A JetStream publish: subject, data, headers (``None``: only the id), message id."""


class Batch:
    """The PubAcks of one batch of JetStream publishes: one result per message, one future
    for the whole batch."""

    __slots__ = ("done", "left", "results")

    def __init__(self, size: int) -> None:
        self.left = size
        self.results: list[BaseException | bool | None] = [None] * size
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def settle(self, index: int, result: BaseException | bool) -> None:
        if self.results[index] is None:
            self.results[index] = result
            self.left -= 1
            if not self.left and not self.done.done():
                self.done.set_result(None)


class _Answers:
    """One wildcard inbox: ``prefix`` + token per message waiting for an answer."""

    def __init__(self, nc: MeshClient) -> None:
        self.nc = nc
        self.prefix = nc.new_inbox() + "."
        self.skip = len(self.prefix)
        self.count = 0

    async def start(self) -> None:
        """Subscribe to the inbox; answers then come to ``_direct_reply`` (or ``_on_reply``,
        for what the read loop does not hand over)."""
        sub = await self.nc.subscribe(self.prefix + "*", cb=self._on_reply)
        self.nc.deliver_directly(sub, self._direct_reply)

    def _direct_reply(self, subject: str, reply: str, data: bytes, headers: dict[str, str]) -> bool:
        raise NotImplementedError

    async def _on_reply(self, msg: Msg) -> None:
        raise NotImplementedError


class PubAcks(_Answers):
    """Pipelined JetStream publishes: one wildcard inbox, PubAcks delivered directly."""

    def __init__(self, nc: MeshClient) -> None:
        super().__init__(nc)
        self.pending: dict[str, tuple[Batch, int]] = {}

    async def send(self, item: Item, batch: Batch, index: int) -> str:
        """Publish ``item`` with a reply inbox for its PubAck; return the inbox's token."""
        self.count += 1
        token = f"{self.count:x}"
        self.pending[token] = (batch, index)
        subject, data, headers, message_id = item
        if headers is None:
            await self.nc.send_id(subject, data, message_id, self.prefix + token)
        else:
            await self.nc.send(subject, data, headers, self.prefix + token)
        return token

    def _direct_reply(self, subject: str, reply: str, data: bytes, headers: dict[str, str]) -> bool:
        if not data:
            return False  # a status (503: no stream); _on_reply reads it
        self._answer(subject, data, headers)
        return True

    async def _on_reply(self, msg: Msg) -> None:
        self._answer(msg.subject, msg.data, msg.headers or {})

    def _answer(self, subject: str, data: bytes, headers: dict[str, str]) -> None:
        waiting = self.pending.pop(subject[self.skip :], None)
        if waiting is None:
            return
        batch, index = waiting
        if not data:
            batch.settle(index, NoStream(headers.get("Status", "")))
        elif b'"error"' in data:
            error = json.loads(data)["error"]
            batch.settle(index, nats.js.errors.APIError.from_error(error))
        else:
            batch.settle(index, True)


class Replies(_Answers):
    """Requests over one wildcard inbox: each waits on its own future; the request is written
    at once rather than on the flusher's next turn."""

    def __init__(self, nc: MeshClient) -> None:
        super().__init__(nc)
        self.waiting: dict[str, asyncio.Future[Message]] = {}

    async def ask(
        self, subject: str, data: bytes, headers: dict[str, str], timeout: float
    ) -> Message:
        """Send a request and wait up to ``timeout`` for its reply (``TimeoutError``;
        nats-py's ``NoRespondersError`` when the server knows nobody listens)."""
        self.count += 1
        token = f"{self.count:x}"
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self.waiting[token] = future
        try:
            await self.nc.send_now(subject, data, headers, self.prefix + token)
            async with asyncio.timeout(timeout):
                return await future
        finally:
            self.waiting.pop(token, None)

    def _direct_reply(self, subject: str, reply: str, data: bytes, headers: dict[str, str]) -> bool:
        future = self.waiting.pop(subject[self.skip :], None)
        if future is not None and not future.done():
            future.set_result(Message(subject, data, headers, id=headers.get(MESSAGE_ID, "")))
        return True

    async def _on_reply(self, msg: Msg) -> None:
        future = self.waiting.pop(msg.subject[self.skip :], None)
        if future is None or future.done():
            return
        headers = msg.headers or {}
        if not msg.data and headers.get("Status") == _NO_RESPONDERS:
            future.set_exception(nats.errors.NoRespondersError())
        else:
            future.set_result(
                Message(msg.subject, msg.data, headers, id=headers.get(MESSAGE_ID, ""))
            )
