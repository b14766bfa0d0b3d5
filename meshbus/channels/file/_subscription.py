"""A subscription on a ``file://`` channel: a member of a group folder.

A member claims a message by renaming it from the group's ``new/`` into its own claim folder
``claims/<consumer id>.<n>/`` (exactly one member wins the rename), reads it, and delivers it.
``ack`` deletes the claimed file; ``nack`` renames it back (through ``delayed/`` when a delay is
asked for) with its delivery count raised; ``reject`` publishes it to ``dead-letter.<group>``
and deletes it. A broadcast subscriber is the only member of a private group that it deletes
when it leaves; settling its messages only deletes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import deque
from typing import TYPE_CHECKING, Self

from meshbus.channels.file._format import parse_name, read_message, read_small_message
from meshbus.channels.file._janitor import give_back, release
from meshbus.channels.file._layout import GroupInfo
from meshbus.errors import CorruptMessage
from meshbus.headers import (
    REPLY_TO,
    dead_letter_headers,
    dead_letter_subject,
)
from meshbus.kit import InFlight
from meshbus.message import Message
from meshbus.transport import Envelope

if TYPE_CHECKING:
    from meshbus.channels.file._transport import FileTransport

__all__ = ["FileSubscription"]

_THREAD_READ = 1 << 20


class FileSubscription(InFlight):
    """One member of a group folder (or a broadcast subscriber's private group). Its claimed
    messages are in flight (the kit's ``InFlight``) by the name of their file."""

    def __init__(
        self, transport: FileTransport, info: GroupInfo, claim_name: str, prefetch: int
    ) -> None:
        super().__init__(prefetch)
        self.transport = transport
        self.info = info
        self.broadcast = info.owner is not None
        self.max_payload = transport.capabilities.max_payload
        self.new = info.new
        self.claims = os.path.join(info.path, "claims", claim_name)
        self.delayed = os.path.join(info.path, "delayed")
        os.makedirs(self.claims, exist_ok=True)
        self.candidates: deque[str] = deque()
        self.timers = transport.timers
        self.wake = asyncio.Event()
        """Set when a file may have come into the group's ``new/``, and on close."""
        transport.notifier.watch(self.new, self.wake.set)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Message:
        while True:
            if self.closing:
                raise StopAsyncIteration
            if self.prefetch_full():
                await self.wait_settled()
                continue
            if not self.candidates:
                self.wake.clear()
                try:
                    names = os.listdir(self.new)
                except FileNotFoundError:
                    names = []  # our group was removed (a janitor thought us dead)
                if not names:
                    await self.wake.wait()
                    continue
                names.sort()
                self.candidates.extend(names)
            message = await self._claim(self.candidates.popleft())
            if message is not None:
                return message

    async def _claim(self, name: str) -> Message | None:
        source = os.path.join(self.new, name)
        parsed = parse_name(name)
        if parsed is None:
            self.transport.quarantine(source, "the name is not a message file name")
            return None
        claimed = os.path.join(self.claims, name)
        try:
            os.rename(source, claimed)
        except FileNotFoundError:
            # Another member was first or, if a janitor took our claim folder because we were
            # too slow to heartbeat, the folder is gone: make it again.
            os.makedirs(self.claims, exist_ok=True)
            return None
        try:
            found = read_small_message(claimed, _THREAD_READ)
            if found is None:  # large: read in a thread, the loop keeps running
                found = await asyncio.to_thread(read_message, claimed)
        except (CorruptMessage, OSError) as exc:
            self.transport.quarantine(claimed, str(exc))
            return None
        meta, payload = found
        headers = meta["headers"]
        assert isinstance(headers, dict)
        key = meta.get("key")
        message = Message(
            str(meta["subject"]),
            payload,
            headers,
            key=key if isinstance(key, str) else None,
            id=str(meta.get("id") or ""),
            attempt=parsed[1] + 1,
            reply_to=headers.get(REPLY_TO),
            settler=self,
            token=name,
        )
        return self._track(message)

    # -- settling (a message given back at close is no longer ours: settling it does nothing)

    def _delete(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self.claims, name))

    async def ack(self, message: Message) -> None:
        """Delete the claimed file."""
        if self._release(message):
            self._delete(message.token)

    async def nack(self, message: Message, delay: float | None) -> None:
        """Give the message back to the group (through ``delayed/`` after a delay)."""
        if not self._release(message):
            return
        name: str = message.token
        if self.broadcast:
            self._delete(name)
            return
        stem, _ = parse_name(name) or (name, 0)
        back = f"{stem}.{message.attempt}"
        claimed = os.path.join(self.claims, name)
        if not delay:
            with contextlib.suppress(FileNotFoundError):
                os.rename(claimed, os.path.join(self.new, back))
            return
        due = time.time_ns() + int(delay * 1e9)
        waiting = os.path.join(self.delayed, f"{due:016x}.{back}")
        with contextlib.suppress(FileNotFoundError):
            os.rename(claimed, waiting)
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle

        def fire() -> None:
            self.timers.discard(handle)
            release(waiting, os.path.join(self.new, back))

        handle = loop.call_later(delay, fire)
        self.timers.add(handle)

    async def reject(self, message: Message, reason: str) -> None:
        """Publish the message to ``dead-letter.<group>`` with the reason, then delete it."""
        if not self._release(message):
            return
        name: str = message.token
        if not self.broadcast:
            headers = dead_letter_headers(
                message.headers, message.subject, self.info.group, reason, message.attempt
            )
            headers.pop(REPLY_TO, None)
            subject = dead_letter_subject(self.info.group)
            dead = Envelope(subject, message.data, headers, message.key, message.id)
            await self.transport.publish(dead, None)
        self._delete(name)

    async def respond(self, message: Message, reply: Envelope) -> None:
        """Write the reply into the requester's reply folder."""
        await self.transport.send_reply(reply)

    async def progress(self, message: Message) -> None:
        """Refresh this process's heartbeat, which keeps all its claims."""
        self.transport.janitor.beat()

    # -- closing ---------------------------------------------------------------------------

    async def close(self, timeout: float) -> None:
        """Stop deliveries, wait up to ``timeout`` for settling, give the rest back."""
        if self.closing:
            return
        self._stop()
        self.wake.set()
        self.transport.notifier.unwatch(self.new, self.wake.set)
        self.transport.forget(self)
        if self.broadcast:
            self._unsettled()
            self.transport.layout.remove_group(self.info)
            return
        await self._drain(timeout)
        self._unsettled()
        give_back(self.claims, self.new)  # every claimed file still here
