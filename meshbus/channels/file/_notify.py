"""Knowing when a folder gains an entry: inotify (Linux, through ctypes) or polling.

inotify is used where it works: Linux, on a local filesystem. Network and FUSE filesystems
(NFS, SMB/CIFS, FUSE, 9p, virtiofs) do not report changes made by other hosts, so they are
polled; so is any system where ``inotify_init1`` or ``inotify_add_watch`` fails. Either way a
watcher also wakes its listeners every ``rescan`` seconds, so a missed event costs latency,
never a message.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import errno
import logging
import os
import struct
import sys
from collections.abc import Callable

__all__ = ["NETWORK_FILESYSTEMS", "Notifier", "filesystem_type", "inotify_works", "load_libc"]

log = logging.getLogger("meshbus.file")

NETWORK_FILESYSTEMS = {
    0x6969: "nfs",
    0x517B: "smb",
    0xFE534D42: "smb2",
    0xFF534D42: "cifs",
    0x65735546: "fuse",
    0x01021997: "9p",
    0x6A656A63: "virtiofs",
    0x47504653: "gpfs",
    0x0BD00BD0: "lustre",
}
"""``statfs`` ``f_type`` magic numbers of filesystems where inotify misses remote changes."""

_IN_NONBLOCK = 0o4000
_IN_CLOEXEC = 0o2000000
_IN_CREATE = 0x100
_IN_MOVED_TO = 0x80
_IN_Q_OVERFLOW = 0x4000
_EVENT = struct.Struct("iIII")

_libc: ctypes.CDLL | None = None


def load_libc() -> ctypes.CDLL | None:
    """The C library (Linux only; loaded once), else ``None``."""
    global _libc
    if _libc is None and sys.platform.startswith("linux"):
        try:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        except OSError:
            return None
    return _libc


def filesystem_type(path: str) -> int | None:
    """The ``f_type`` magic of the filesystem holding ``path`` (Linux), else ``None``."""
    libc = load_libc()
    if libc is None:
        return None
    buf = ctypes.create_string_buffer(256)  # struct statfs is 120 bytes on 64-bit Linux
    if libc.statfs(os.fsencode(path), buf) != 0:
        return None
    return ctypes.c_ulong.from_buffer(buf).value & 0xFFFFFFFF


def inotify_works(path: str) -> tuple[bool, str]:
    """Whether inotify can watch ``path``, and why not if it cannot."""
    libc = load_libc()
    if libc is None:
        return False, f"inotify is Linux-only (this is {sys.platform})"
    kind = filesystem_type(path)
    if kind in NETWORK_FILESYSTEMS:
        return False, f"{path} is on {NETWORK_FILESYSTEMS[kind]}, where inotify misses changes"
    fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
    if fd < 0:
        return False, f"inotify_init1 failed: {os.strerror(ctypes.get_errno())}"
    try:
        if libc.inotify_add_watch(fd, os.fsencode(path), _IN_CREATE) < 0:
            return False, f"inotify_add_watch failed: {os.strerror(ctypes.get_errno())}"
    finally:
        os.close(fd)
    return True, ""


class Notifier:
    """Calls a listener when a watched folder gains an entry (inotify), and every ``rescan``
    seconds regardless (polling mode sets ``rescan`` to the poll interval)."""

    def __init__(self, use_inotify: bool, rescan: float) -> None:
        self.use_inotify = use_inotify
        self.rescan = rescan
        self._fd = -1
        self._watches: dict[int, list[Callable[[], None]]] = {}
        self._paths: dict[str, int] = {}
        self._listeners: set[Callable[[], None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tick: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Open the inotify instance and start the rescan timer."""
        self._loop = asyncio.get_running_loop()
        if self.use_inotify:
            libc = load_libc()
            assert libc is not None
            self._fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
            if self._fd < 0:
                raise OSError(ctypes.get_errno(), "inotify_init1 failed")
            self._loop.add_reader(self._fd, self._read)
        self._tick = self._loop.call_later(self.rescan, self._on_tick)

    def watch(self, path: str, listener: Callable[[], None]) -> None:
        """Call ``listener`` when ``path`` gains an entry and on every rescan tick."""
        self._listeners.add(listener)
        if self._fd < 0:
            return
        libc = load_libc()
        assert libc is not None
        wd = libc.inotify_add_watch(self._fd, os.fsencode(path), _IN_CREATE | _IN_MOVED_TO)
        if wd < 0:
            err = ctypes.get_errno()
            log.warning("inotify cannot watch %s (%s); it is polled", path, os.strerror(err))
            return
        self._paths.setdefault(path, wd)
        self._watches.setdefault(wd, []).append(listener)

    def unwatch(self, path: str, listener: Callable[[], None]) -> None:
        """Stop calling ``listener`` for ``path``."""
        self._listeners.discard(listener)
        wd = self._paths.get(path)
        if wd is None:
            return
        listeners = self._watches.get(wd, [])
        if listener in listeners:
            listeners.remove(listener)
        if not listeners:
            self._watches.pop(wd, None)
            del self._paths[path]
            libc = load_libc()
            if libc is not None and self._fd >= 0:
                libc.inotify_rm_watch(self._fd, wd)

    def _read(self) -> None:
        try:
            data = os.read(self._fd, 65536)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EINTR):
                return
            raise
        fired: set[int] = set()
        offset = 0
        while offset + _EVENT.size <= len(data):
            wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
            offset += _EVENT.size + length
            if mask & _IN_Q_OVERFLOW:
                self._wake_all()
                return
            fired.add(wd)
        for wd in fired:
            for listener in list(self._watches.get(wd, ())):
                listener()

    def _wake_all(self) -> None:
        for listener in list(self._listeners):
            listener()

    def _on_tick(self) -> None:
        self._wake_all()
        if self._loop is not None:
            self._tick = self._loop.call_later(self.rescan, self._on_tick)

    def close(self) -> None:
        """Stop the timer and close the inotify instance (idempotent)."""
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None
        if self._fd >= 0:
            if self._loop is not None:
                self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1
        self._watches.clear()
        self._paths.clear()
        self._listeners.clear()
