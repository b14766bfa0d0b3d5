"""Putting message files in place: write under a unique name in tmp/, fsync, then link (one
hard link per target folder) or rename (a single target) into place, then fsync the targets.

A reader lists only the target folders, where a file appears whole or not at all.

With fsync, a batch is written in chunks: every file of a chunk is written and its writeback
started, then each is fsynced (the first fsync usually commits the whole chunk in one journal
transaction, so the rest find it committed and cost a cache flush at most), then the chunk's
files are put in place in order.
Every file is still durable before its name appears, as with one write + fsync + rename at a
time, at a fraction of the journal commits.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Callable, Sequence

from meshbus.channels.file._layout import fsync_dir
from meshbus.channels.file._notify import load_libc

__all__ = ["Planned", "write_batch"]

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
_CHUNK = 1 << 30
_FSYNC_FILES = 32  # files open at once while a chunk is fsynced (several threads may write)
_FSYNC_BYTES = 64 << 20  # and at most this much written but not yet fsynced

Planned = tuple[str, bytes, bytes, str, Sequence[str]]
"""One message to write: (temp path, header, payload, final name, target folders)."""


def _writeback_starter() -> Callable[[int], object]:
    """``sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE)`` where Linux has it: start writing a
    file's pages without waiting, so that a later fsync finds them allocated and on their way.
    Elsewhere a no-op: fsync alone gives the same durability."""
    libc = load_libc()
    call = getattr(libc, "sync_file_range", None)
    if call is None:
        return lambda fd: None
    call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    call.restype = ctypes.c_int
    return lambda fd: call(fd, 0, 0, 2)  # errors ignored: only a hint


_writeback: Callable[[int], object] | None = None


def _start_writeback(fd: int) -> None:
    global _writeback
    if _writeback is None:
        _writeback = _writeback_starter()
    _writeback(fd)


def _write_all(fd: int, header: bytes, data: bytes) -> None:
    if len(data) <= 1 << 20:
        written = os.writev(fd, [header, data])
        if written == len(header) + len(data):
            return
        rest = memoryview(header + data)[written:]  # short write: rare, small
    else:
        os.write(fd, header)  # header is small; short writes on regular files do not happen
        rest = memoryview(data)  # written from the caller's bytes, never copied
    while rest:
        done = os.write(fd, rest[:_CHUNK])
        rest = rest[done:]


def _place(plan: Planned, touched: set[str]) -> None:
    """Rename (one target) or link (several) the written temp file into place."""
    temp, _, _, name, targets = plan
    if len(targets) == 1:
        try:
            os.rename(temp, os.path.join(targets[0], name))
            touched.add(targets[0])
            return
        except FileNotFoundError:
            pass  # the group was removed meanwhile (a broadcast subscriber left)
    else:
        for folder in targets:
            try:
                os.link(temp, os.path.join(folder, name))
                touched.add(folder)
            except FileNotFoundError:
                pass
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temp)


def _write_durable(chunk: Sequence[Planned], touched: set[str]) -> None:
    """Write and fsync every file of ``chunk``, then put them in place in order."""
    fds: list[int] = []
    try:
        for temp, header, data, _, _ in chunk:
            fds.append(os.open(temp, _FLAGS, 0o644))
            _write_all(fds[-1], header, data)
            _start_writeback(fds[-1])
        for fd in fds:
            os.fsync(fd)
    except BaseException:
        for plan in chunk[: len(fds)]:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(plan[0])
        raise
    finally:
        for fd in fds:
            os.close(fd)
    for plan in chunk:
        _place(plan, touched)


def write_batch(batch: Sequence[Planned], fsync: bool) -> None:
    """Write every planned message into its target folders, in order.

    Messages go in place in batch order, so an error leaves some first messages of the batch
    in place and none after them (a message linked into several folders may be in some of
    them); every temp file is removed. With ``fsync``, each file is fsynced before it is put in
    place and each target folder once after the whole batch.
    """
    touched: set[str] = set()
    if not fsync:
        for plan in batch:
            temp, header, data, _, _ = plan
            fd = os.open(temp, _FLAGS, 0o644)
            try:
                _write_all(fd, header, data)
            except BaseException:
                os.close(fd)
                os.unlink(temp)
                raise
            os.close(fd)
            _place(plan, touched)
        return
    start = size = 0
    for end, plan in enumerate(batch, 1):
        size += len(plan[2])
        if end - start == _FSYNC_FILES or size >= _FSYNC_BYTES or end == len(batch):
            _write_durable(batch[start:end], touched)
            start, size = end, 0
    for folder in touched:
        with contextlib.suppress(FileNotFoundError):
            fsync_dir(folder)
