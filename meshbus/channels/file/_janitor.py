"""Heartbeats and leases: every process keeps its own heartbeat fresh and, in passing, gives
back what dead processes left behind.

A process (one connected transport) is known by its consumer id and its heartbeat file
``consumers/<id>``, whose mtime it touches every ``lease / 3`` seconds. Another process
decides that it is dead when the file is gone, or when it has watched the mtime stay unchanged
for ``lease`` seconds of its own monotonic clock (so clocks of different hosts need not agree).
Then any live process:

- gives the dead one's claims back to their groups' ``new/`` folders, counting the delivery
  (the count is part of the file name);
- deletes the broadcast groups it owned, its reply folder, its files left in ``tmp/`` (a
  message it was writing when it died) and finally its heartbeat file;
- and, for every group, moves nacked messages from ``delayed/`` to ``new/`` once due.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time

from meshbus.channels.file._format import parse_name
from meshbus.channels.file._layout import Layout

__all__ = ["Janitor", "claim_owner", "give_back"]

log = logging.getLogger("meshbus.file")


def claim_owner(claim_dir: str) -> str:
    """The consumer id of a claim folder named ``<consumer id>.<n>``."""
    return claim_dir.rsplit(".", 1)[0]


def give_back(claims: str, new: str, counted: bool = True) -> int:
    """Return every message in the claim folder ``claims`` to ``new``, counting the delivery
    unless ``counted`` is false; remove the folder. Returns how many went back."""
    try:
        names = os.listdir(claims)
    except FileNotFoundError:
        return 0
    moved = 0
    for name in names:
        parsed = parse_name(name)
        if parsed is None:
            continue
        stem, deliveries = parsed
        with contextlib.suppress(FileNotFoundError):
            os.rename(
                os.path.join(claims, name),
                os.path.join(new, f"{stem}.{deliveries + int(counted)}"),
            )
            moved += 1
    with contextlib.suppress(OSError):
        os.rmdir(claims)
    return moved


class Janitor:
    """Keeps this process's heartbeat fresh and cleans up after dead processes."""

    def __init__(self, layout: Layout, consumer_id: str, lease: float) -> None:
        self.layout = layout
        self.id = consumer_id
        self.lease = lease
        self.heartbeat = os.path.join(layout.consumers, consumer_id)
        self._seen: dict[str, tuple[int, float]] = {}
        self._listed: set[str] = set()

    def beat(self) -> None:
        """Touch the heartbeat file (re-creating it if another process took our lease)."""
        try:
            os.utime(self.heartbeat)
        except FileNotFoundError:
            with open(self.heartbeat, "wb"):
                pass

    def remove_heartbeat(self) -> None:
        """Say that this process is gone (at close)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.heartbeat)

    def _observe(self) -> None:
        now = time.monotonic()
        names = set(os.listdir(self.layout.consumers))
        for name in names:
            try:
                mtime = os.stat(os.path.join(self.layout.consumers, name)).st_mtime_ns
            except FileNotFoundError:
                continue
            seen = self._seen.get(name)
            if seen is None or seen[0] != mtime:
                self._seen[name] = (mtime, now)
        for gone in set(self._seen) - names:
            del self._seen[gone]
        self._listed = names

    def is_dead(self, consumer: str) -> bool:
        """Whether ``consumer`` has stopped heartbeating (see the module docstring)."""
        if consumer == self.id:
            return False
        if consumer not in self._listed:
            # Not there when we listed: dead, unless it started since.
            return not os.path.exists(os.path.join(self.layout.consumers, consumer))
        seen = self._seen.get(consumer)
        return seen is not None and time.monotonic() - seen[1] > self.lease

    def sweep(self) -> None:
        """One round of clean-up over the whole tree."""
        self._observe()
        dead: set[str] = set()
        for group in self.layout.all_groups():
            if group.owner is not None and self.is_dead(group.owner):
                self.layout.remove_group(group)
                continue
            claims_root = os.path.join(group.path, "claims")
            with contextlib.suppress(FileNotFoundError):
                for claim in os.listdir(claims_root):
                    owner = claim_owner(claim)
                    if self.is_dead(owner):
                        dead.add(owner)
                        moved = give_back(os.path.join(claims_root, claim), group.new)
                        if moved:
                            log.warning(
                                "meshbus file channel: consumer %s stopped heartbeating; "
                                "%d claimed message(s) of group %r returned",
                                owner,
                                moved,
                                group.group,
                            )
            self._release_delayed(group.path)
        self._sweep_tmp()
        with contextlib.suppress(FileNotFoundError):
            for owner in os.listdir(self.layout.replies):
                if self.is_dead(owner):
                    shutil.rmtree(os.path.join(self.layout.replies, owner), ignore_errors=True)
        for owner in self._listed:
            if self.is_dead(owner):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(self.layout.consumers, owner))

    def _release_delayed(self, group_path: str) -> None:
        delayed = os.path.join(group_path, "delayed")
        try:
            names = os.listdir(delayed)
        except FileNotFoundError:
            return
        now = time.time_ns()
        for name in names:
            due, _, rest = name.partition(".")
            try:
                if int(due, 16) > now:
                    continue
            except ValueError:
                continue
            release(os.path.join(delayed, name), os.path.join(group_path, "new", rest))

    def _sweep_tmp(self) -> None:
        for name in os.listdir(self.layout.tmp):
            parts = name.split(".")
            if len(parts) >= 3 and self.is_dead(parts[1]):
                path = os.path.join(self.layout.tmp, name)
                if os.path.isdir(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
                log.info("meshbus file channel: removed %s left by a dead writer", path)


def release(delayed_path: str, new_path: str) -> None:
    """Move a delayed message to its group's ``new/`` (no error if someone else did)."""
    with contextlib.suppress(FileNotFoundError):
        os.rename(delayed_path, new_path)
