"""``FileTransport``: the ``file://`` channel over one directory (see the package docstring)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from meshbus.channels.file._format import encode_header, read_message
from meshbus.channels.file._janitor import Janitor
from meshbus.channels.file._layout import Layout
from meshbus.channels.file._notify import Notifier, inotify_works
from meshbus.channels.file._options import FileOptions
from meshbus.channels.file._subscription import FileSubscription
from meshbus.channels.file._writer import Planned, write_batch
from meshbus.errors import Closed, CorruptMessage, InvalidURL, NoResponders, RequestTimeout
from meshbus.headers import CORRELATION_ID, REPLY_TO
from meshbus.message import Message
from meshbus.transport import Capabilities, Envelope

__all__ = ["FileTransport"]

log = logging.getLogger("meshbus.file")

_INBOX = re.compile(r"_INBOX\.([A-Za-z0-9_-]{1,80})\.([0-9]{1,18})")
_THREAD_WRITE = 256 * 1024
_THREAD_BATCH = 16


def _consumer_id() -> str:
    host = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:24] or "host"
    return f"{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class FileTransport:
    """The ``file://`` channel: messages as files in a directory many processes share."""

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        self.url = url
        self.options = FileOptions.parse(url, options)
        self.capabilities = Capabilities(
            max_payload=self.options.max_payload,
            durable=True,
            ordered_by_key=True,
            no_responders=True,
        )
        self.id = _consumer_id()
        self.layout = Layout(self.options.root, self.id)
        self.janitor = Janitor(self.layout, self.id, self.options.lease)
        self.notifier = Notifier(False, self.options.poll_interval)
        self.notify_mode = "poll"
        """``inotify`` or ``poll``: how this transport learns of new files."""
        self.timers: set[asyncio.TimerHandle] = set()
        self._subs: set[FileSubscription] = set()
        self._claim_names = itertools.count(1)
        self._stamp = 0
        self._pending: dict[int, asyncio.Future[Message]] = {}
        self._request_ids = itertools.count(1)
        self._reply_dir: str | None = None
        self._janitor_task: asyncio.Task[None] | None = None
        self._state = 0  # 0 new, 1 open, 2 closed

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Check the directory (``InvalidURL`` / ``ProtocolError`` if unusable) and join it."""
        self.layout.check(self.url)
        self.janitor.beat()
        try:
            self._join()
        except BaseException:
            self.notifier.close()
            self.janitor.remove_heartbeat()
            raise
        self._janitor_task = asyncio.create_task(self._keep_up())
        self._state = 1

    def _join(self) -> None:
        self.layout.check_links(self.url)
        options = self.options
        use_inotify = False
        if options.notify != "poll":
            works, why = inotify_works(self.layout.groups)
            if options.notify == "inotify" and not works:
                raise InvalidURL(self.url, f"notify=inotify, but {why}")
            if not works:
                log.info("meshbus file channel: polling %s (%s)", options.root, why)
            use_inotify = works
        self.notify_mode = "inotify" if use_inotify else "poll"
        rescan = options.rescan if use_inotify else options.poll_interval
        self.notifier = Notifier(use_inotify, rescan)
        self.notifier.start()
        self.janitor.sweep()

    async def _keep_up(self) -> None:
        interval = self.options.lease / 3
        while True:
            await asyncio.sleep(interval)
            try:
                self.janitor.beat()
                self.janitor.sweep()
            except OSError as exc:  # a full or vanished volume must not kill the process
                log.error("meshbus file channel: heartbeat/clean-up failed: %s", exc)

    def _check_open(self) -> None:
        if self._state != 1:
            raise Closed(f"{self.url} is not connected")

    async def close(self, timeout: float) -> None:
        """Drain subscriptions, then leave: heartbeat and reply folder removed. Idempotent."""
        if self._state != 1:
            self._state = 2
            return
        self._state = 2
        subs = list(self._subs)
        await asyncio.gather(*(sub.close(timeout) for sub in subs))
        for handle in self.timers:
            handle.cancel()  # delayed messages wait in delayed/ for any janitor
        self.timers.clear()
        if self._janitor_task is not None:
            self._janitor_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._janitor_task
        for future in self._pending.values():
            future.cancel()
        if self._reply_dir is not None:
            self.notifier.unwatch(self._reply_dir, self._read_replies)
            shutil.rmtree(self._reply_dir, ignore_errors=True)
        self.notifier.close()
        self.janitor.remove_heartbeat()

    def forget(self, sub: FileSubscription) -> None:
        """Called by a subscription that closes."""
        self._subs.discard(sub)

    # -- publishing ------------------------------------------------------------------------

    def _next_stamp(self) -> int:
        stamp = max(time.time_ns(), self._stamp + 1)
        self._stamp = stamp
        return stamp

    def _plan(self, envelope: Envelope, folders: Sequence[str]) -> Planned:
        stamp = self._next_stamp()
        temp = os.path.join(self.layout.tmp, f"m.{self.id}.{stamp:016x}")
        name = f"{stamp:016x}.{self.id}.0"
        return (temp, encode_header(envelope), envelope.data, name, folders)

    async def _write(self, batch: list[Planned], fsync: bool) -> None:
        if not batch:
            return
        if fsync or len(batch) >= _THREAD_BATCH or sum(len(p[2]) for p in batch) > _THREAD_WRITE:
            # In a thread, so that this process's readers go on meanwhile (one hop per batch).
            # Waits for the disk even past the timeout: a write cannot be taken back halfway.
            await asyncio.to_thread(write_batch, batch, fsync)
        else:
            write_batch(batch, fsync)

    async def publish(self, envelope: Envelope, timeout: float | None) -> None:
        """Write the message into the ``new/`` folder of every group it matches; return once
        it is durably there (file and folders fsynced unless ``fsync=false``)."""
        await self.publish_many([envelope], timeout)

    async def publish_many(self, envelopes: Sequence[Envelope], timeout: float | None) -> None:
        """Publish a batch: one fsync per file, one per target folder for the whole batch."""
        self._check_open()
        batch: list[Planned] = []
        self.layout.all_groups()
        for envelope in envelopes:
            groups = self.layout.groups_for(envelope.subject, listed=True)
            if groups:
                batch.append(self._plan(envelope, [g.new for g in groups]))
        await self._write(batch, self.options.fsync)

    # -- subscribing -----------------------------------------------------------------------

    async def subscribe(self, pattern: str, group: str | None, prefetch: int) -> FileSubscription:
        """Join ``group`` (registered on disk if new); without a group, register a private
        group that lives while this subscription does."""
        self._check_open()
        n = next(self._claim_names)
        if group is None:
            info = self.layout.register_group(pattern, f"{self.id}.{n}", self.id)
        else:
            info = self.layout.register_group(pattern, group, None)
        sub = FileSubscription(self, info, f"{self.id}.{n}", prefetch)
        self._subs.add(sub)
        return sub

    async def declare_group(self, pattern: str, group: str) -> None:
        """Register ``group`` on disk, so that every writer fans out to it from now on."""
        self._check_open()
        self.layout.register_group(pattern, group, None)

    def quarantine(self, path: str, reason: str) -> None:
        """Move a bad file aside into ``quarantine/`` and report it; never raises."""
        target = os.path.join(
            self.layout.quarantine, f"{time.time_ns():016x}.{uuid.uuid4().hex[:8]}"
        )
        try:
            os.rename(path, target)
        except FileNotFoundError:
            return
        except OSError as exc:
            log.error("meshbus file channel: cannot quarantine %s (%s): %s", path, reason, exc)
            return
        with contextlib.suppress(OSError), open(target + ".reason", "w") as note:
            note.write(f"{path}\n{reason}\n")
        log.warning("meshbus file channel: moved %s to %s: %s", path, target, reason)

    # -- request / reply -------------------------------------------------------------------

    async def request(self, envelope: Envelope, timeout: float) -> Message:
        """Publish a request with a reply address in this process's reply folder."""
        self._check_open()
        if not self.layout.groups_for(envelope.subject):
            raise NoResponders(envelope.subject)
        if self._reply_dir is None:
            self._reply_dir = os.path.join(self.layout.replies, self.id)
            os.makedirs(self._reply_dir, exist_ok=True)
            self.notifier.watch(self._reply_dir, self._read_replies)
        n = next(self._request_ids)
        envelope.headers[REPLY_TO] = f"_INBOX.{self.id}.{n}"
        envelope.headers[CORRELATION_ID] = envelope.id
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[n] = future
        try:
            async with asyncio.timeout(timeout):
                await self.publish(envelope, timeout)
                return await future
        except TimeoutError:
            raise RequestTimeout(envelope.subject, timeout) from None
        finally:
            self._pending.pop(n, None)

    async def send_reply(self, reply: Envelope) -> None:
        """Write a reply into its requester's folder (dropped if the requester is gone)."""
        match = _INBOX.fullmatch(reply.subject)
        if match is None:
            log.warning("meshbus file channel: bad reply address %r; reply dropped", reply.subject)
            return
        folder = os.path.join(self.layout.replies, match[1])
        stamp = self._next_stamp()
        temp = os.path.join(self.layout.tmp, f"m.{self.id}.{stamp:016x}")
        name = f"{match[2]}.{self.id}.{stamp:016x}"
        # Replies are not fsynced: only a live requester, waiting in memory, can use one.
        await self._write([(temp, encode_header(reply), reply.data, name, [folder])], False)

    def _read_replies(self) -> None:
        folder = self._reply_dir
        if folder is None or not self._pending:
            return
        for name in os.listdir(folder):
            path = os.path.join(folder, name)
            try:
                meta, payload = read_message(path)
            except (CorruptMessage, OSError) as exc:
                self.quarantine(path, str(exc))
                continue
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            number = name.split(".", 1)[0]
            future = self._pending.get(int(number)) if number.isdigit() else None
            if future is not None and not future.done():
                headers = meta["headers"]
                assert isinstance(headers, dict)
                future.set_result(
                    Message(str(meta["subject"]), payload, headers, id=str(meta.get("id") or ""))
                )
