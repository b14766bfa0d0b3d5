"""Options of a ``file://`` URL."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from meshbus.errors import InvalidURL
from meshbus.kit import channel_settings, move_typed, reject_unknown

__all__ = ["DEFAULT_MAX_PAYLOAD", "FileOptions"]

DEFAULT_MAX_PAYLOAD = 1 << 30


@dataclass(frozen=True, slots=True)
class FileOptions:
    """Settings of one ``file://`` channel, from its URL and ``options``."""

    root: str
    notify: str = "auto"
    """``auto`` (inotify where it works, else polling), ``inotify`` or ``poll``."""
    poll_interval: float = 0.05
    """Seconds between scans in polling mode."""
    rescan: float = 1.0
    """Seconds between safety scans in inotify mode."""
    fsync: bool = True
    """fsync files and folders before a publish returns (off: fast, not crash-safe)."""
    lease: float = 15.0
    """Seconds without a heartbeat after which a process's claims go back to the queue."""
    max_payload: int = DEFAULT_MAX_PAYLOAD

    @classmethod
    def parse(cls, url: str, options: Mapping[str, Any] | None) -> FileOptions:
        """Read ``file:///path?notify=poll&fsync=false&lease=15&max_payload=...``."""
        parts, settings = channel_settings(url, options)
        if parts.netloc not in ("", "localhost"):
            raise InvalidURL(url, "file:// takes an absolute path: file:///shared/queue")
        root = unquote(parts.path)
        if not root.startswith("/"):
            raise InvalidURL(url, "file:// takes an absolute path: file:///shared/queue")
        values: dict[str, Any] = {}
        try:
            move_typed(
                settings,
                values,
                ints=("max_payload",),
                floats=("poll_interval", "rescan", "lease"),
                strs=("notify",),
                flags=("fsync",),
            )
        except (TypeError, ValueError) as exc:
            raise InvalidURL(url, f"bad option value: {exc}") from exc
        values["notify"] = values.get("notify", "auto").lower()
        reject_unknown(url, "file", settings)
        made = cls(os.path.normpath(root), **values)
        if made.notify not in ("auto", "inotify", "poll"):
            raise InvalidURL(url, "notify is one of auto, inotify, poll")
        if min(made.poll_interval, made.rescan, made.lease) <= 0 or made.max_payload < 1:
            raise InvalidURL(url, "poll_interval, rescan, lease and max_payload must be > 0")
        return made
