"""Putting message files in place: write under a unique name in tmp/, fsync, then link (one
hard link per target folder) or rename (a single target) into place, then fsync the targets.

A reader lists only the target folders, where a file appears whole or not at all.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence

from meshbus.channels.file._layout import fsync_dir

__all__ = ["Planned", "write_batch"]

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
_CHUNK = 1 << 30

Planned = tuple[str, bytes, bytes, str, Sequence[str]]
"""One message to write: (temp path, header, payload, final name, target folders)."""


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


def write_batch(batch: Sequence[Planned], fsync: bool) -> None:
    """Write every planned message durably into its target folders.

    Each message is in place in all its folders, or (on error) in none of them except those
    linked before the error; the temp file is always removed. With ``fsync``, each file is
    fsynced before it is linked and each target folder once after the whole batch.
    """
    touched: set[str] = set()
    for temp, header, data, name, targets in batch:
        fd = os.open(temp, _FLAGS, 0o644)
        try:
            try:
                _write_all(fd, header, data)
                if fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            if len(targets) == 1:
                try:
                    os.rename(temp, os.path.join(targets[0], name))
                    touched.add(targets[0])
                except FileNotFoundError:
                    pass  # the group was removed meanwhile (a broadcast subscriber left)
                continue
            for folder in targets:
                try:
                    os.link(temp, os.path.join(folder, name))
                    touched.add(folder)
                except FileNotFoundError:
                    pass
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
    if fsync:
        for folder in touched:
            with contextlib.suppress(FileNotFoundError):
                fsync_dir(folder)
