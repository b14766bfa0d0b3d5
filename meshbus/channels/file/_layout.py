"""The directory tree of a ``file://`` channel (layout version 1; see docs/file-layout.md)."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
import stat
import time
import uuid
from dataclasses import dataclass

from meshbus.errors import InvalidURL, ProtocolError
from meshbus.kit import BoundedCache
from meshbus.subjects import matches

__all__ = ["LAYOUT_FILE", "LAYOUT_VERSION", "GroupInfo", "Layout", "fsync_dir"]

log = logging.getLogger("meshbus.file")

LAYOUT_VERSION = 1
LAYOUT_FILE = "meshbus-layout.json"
FOLDERS = ("tmp", "groups", "consumers", "replies", "quarantine")
GROUP_FOLDERS = ("new", "claims", "delayed")
_RACY_NS = 100_000_000  # a folder changed this recently may change again unseen (coarse mtime)


def fsync_dir(path: str) -> None:
    """Make the entries of folder ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _encode_pattern(pattern: str) -> str:
    return pattern.replace("*", "+").replace(">", "~")


@dataclass(frozen=True, slots=True)
class GroupInfo:
    """A group registered on disk."""

    dirname: str
    pattern: str
    group: str
    owner: str | None
    """The consumer id of a broadcast subscriber's private group; ``None`` for durable ones."""
    path: str

    @property
    def new(self) -> str:
        """Where ready messages wait."""
        return os.path.join(self.path, "new")


class Layout:
    """Paths of one channel directory, the connect-time checks, and the group registry."""

    def __init__(self, root: str, owner_id: str) -> None:
        self.root = root
        self.id = owner_id
        """This process's consumer id; temp names carry it so the janitor knows whose they are."""
        self.tmp = os.path.join(root, "tmp")
        self.groups = os.path.join(root, "groups")
        self.consumers = os.path.join(root, "consumers")
        self.replies = os.path.join(root, "replies")
        self.quarantine = os.path.join(root, "quarantine")
        self._known: dict[str, GroupInfo | None] = {}
        self._listing: list[GroupInfo] = []
        self._listed_key: tuple[int, int, int] | None = None
        self._routes: BoundedCache[str, list[GroupInfo]] = BoundedCache()

    # -- connect ---------------------------------------------------------------------------

    def check(self, url: str) -> None:
        """Create the tree where needed and check that the directory is usable: present,
        writable, with a layout version we know."""
        root = self.root
        try:
            if not stat.S_ISDIR(os.stat(root).st_mode):
                raise InvalidURL(url, f"the channel directory {root} is not a directory")
        except FileNotFoundError as exc:
            raise InvalidURL(url, f"the channel directory {root} does not exist") from exc
        except PermissionError as exc:
            raise InvalidURL(url, f"the channel directory {root} cannot be reached: {exc}") from exc
        if os.statvfs(root).f_flag & os.ST_RDONLY:
            raise InvalidURL(url, f"the channel directory {root} is on a read-only filesystem")
        self._check_version(url)
        try:
            for name in FOLDERS:
                os.makedirs(os.path.join(root, name), exist_ok=True)
        except OSError as exc:
            raise InvalidURL(url, f"the channel directory {root} is not writable: {exc}") from exc

    def check_links(self, url: str) -> None:
        """Check that a file in tmp/ can be hard-linked into groups/ (same filesystem).
        Call once this process's heartbeat exists, so no janitor takes the probe for litter."""
        probe = os.path.join(self.tmp, f"probe.{self.id}.{uuid.uuid4().hex}")
        try:
            with open(probe, "wb"):
                pass
        except OSError as exc:
            raise InvalidURL(url, f"cannot write in {self.tmp}: {exc}") from exc
        try:
            target = os.path.join(self.groups, "." + os.path.basename(probe))
            try:
                os.link(probe, target)
            except OSError as exc:
                if exc.errno == errno.EXDEV:
                    raise InvalidURL(
                        url,
                        f"{self.tmp} and {self.groups} are on different filesystems (EXDEV); "
                        "the channel needs atomic links and renames between them: mount the "
                        "whole directory as one volume",
                    ) from exc
                raise InvalidURL(url, f"hard links do not work in {self.root}: {exc}") from exc
            os.unlink(target)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(probe)

    def _check_version(self, url: str) -> None:
        path = os.path.join(self.root, LAYOUT_FILE)
        try:
            with open(path, "rb") as handle:
                raw = handle.read(4096)
        except FileNotFoundError:
            self._write_version(path)
            return
        try:
            version = json.loads(raw)["layout"]
            if not isinstance(version, int):
                raise TypeError(version)
        except (ValueError, KeyError, TypeError) as exc:
            raise ProtocolError(f"{path} is not a meshbus layout file: {exc!r}") from exc
        if version > LAYOUT_VERSION:
            raise ProtocolError(
                f"{self.root} has on-disk layout version {version}; this meshbus reads "
                f"version {LAYOUT_VERSION}: upgrade meshbus in this container"
            )

    def _write_version(self, path: str) -> None:
        temp = f"{path}.{uuid.uuid4().hex}"
        body = {"layout": LAYOUT_VERSION, "doc": "https://meshbus docs/file-layout.md"}
        try:
            with open(temp, "w") as handle:
                json.dump(body, handle)
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(temp, path)  # never replaces a version file another process wrote
            except FileExistsError:
                pass
            fsync_dir(self.root)
        except OSError as exc:
            if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise InvalidURL(
                    f"file://{self.root}", f"the channel directory is not writable: {exc}"
                ) from exc
            raise
        finally:
            with contextlib.suppress(OSError):
                os.unlink(temp)

    # -- groups ----------------------------------------------------------------------------

    def group_dirname(self, pattern: str, group: str, owner: str | None) -> str:
        """The folder name of a group: readable where it fits, hashed where it does not."""
        name = f"{group}@{_encode_pattern(pattern)}"
        if owner is not None:
            name = f"_b.{name}"
        if len(name.encode()) > 200:
            digest = hashlib.sha256(f"{owner}\0{group}\0{pattern}".encode()).hexdigest()[:40]
            name = f"{'_b.' if owner is not None else ''}h.{digest}"
        return name

    def register_group(self, pattern: str, group: str, owner: str | None) -> GroupInfo:
        """Create the group on disk, atomically (built in tmp/, renamed into groups/), or
        return the one that exists."""
        dirname = self.group_dirname(pattern, group, owner)
        path = os.path.join(self.groups, dirname)
        info = GroupInfo(dirname, pattern, group, owner, path)
        if os.path.isdir(os.path.join(path, "new")):
            return info
        temp = os.path.join(self.tmp, f"group.{self.id}.{uuid.uuid4().hex}")
        os.mkdir(temp)
        try:
            for sub in GROUP_FOLDERS:
                os.mkdir(os.path.join(temp, sub))
            meta = {"layout": LAYOUT_VERSION, "pattern": pattern, "group": group, "owner": owner}
            with open(os.path.join(temp, "meta.json"), "w") as handle:
                json.dump(meta, handle)
                handle.flush()
                os.fsync(handle.fileno())
            fsync_dir(temp)
            try:
                os.rename(temp, path)
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
            else:
                fsync_dir(self.groups)
        finally:
            shutil.rmtree(temp, ignore_errors=True)
        self._listed_key = None
        return info

    def remove_group(self, info: GroupInfo) -> None:
        """Take a group away at once (renamed into tmp/, then deleted)."""
        trash = os.path.join(self.tmp, f"trash.{self.id}.{uuid.uuid4().hex}")
        try:
            os.rename(info.path, trash)
        except FileNotFoundError:
            return
        shutil.rmtree(trash, ignore_errors=True)
        self._listed_key = None

    def read_group(self, dirname: str) -> GroupInfo | None:
        """The group in ``groups/<dirname>``, or ``None`` (reported) if it is not one."""
        if dirname in self._known:
            return self._known[dirname]
        path = os.path.join(self.groups, dirname)
        info: GroupInfo | None = None
        try:
            with open(os.path.join(path, "meta.json"), "rb") as handle:
                meta = json.loads(handle.read(65536))
            info = GroupInfo(dirname, meta["pattern"], meta["group"], meta.get("owner"), path)
        except FileNotFoundError:
            if not os.path.exists(path):
                return None  # gone meanwhile; ask again next time
            log.warning("meshbus file channel: %s is not a group (no meta.json); ignored", path)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("meshbus file channel: %s has an unreadable meta.json (%s)", path, exc)
        self._known[dirname] = info
        return info

    def all_groups(self) -> list[GroupInfo]:
        """Every registered group, re-listed only when ``groups/`` has changed."""
        info = os.stat(self.groups)
        key = (info.st_mtime_ns, info.st_nlink, info.st_ino)
        if key != self._listed_key:
            now = time.time_ns()
            listing: list[GroupInfo] = []
            names = os.listdir(self.groups)
            for name in names:
                if name.startswith("."):
                    continue  # a connect-time probe
                group = self.read_group(name)
                if group is not None:
                    listing.append(group)
            for stale in set(self._known) - set(names):
                del self._known[stale]
            self._listing = listing
            self._routes.clear()
            # Trust this listing next time only if the folder had been still for a while:
            # timestamps are coarse, so a change within the same tick would not show.
            self._listed_key = key if now - info.st_mtime_ns > _RACY_NS else None
        return self._listing

    def groups_for(self, subject: str, *, listed: bool = False) -> list[GroupInfo]:
        """Every registered group whose pattern matches ``subject``. With ``listed``, trust
        the listing of the last ``all_groups()`` call (a batch checks ``groups/`` once)."""
        if not listed:
            self.all_groups()
        found = self._routes.get(subject)
        if found is None:
            found = self._routes.put(
                subject, [g for g in self._listing if matches(g.pattern, subject)]
            )
        return found
