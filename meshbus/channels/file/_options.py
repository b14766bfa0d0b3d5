"""Options of a ``file://`` URL."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote

from meshbus.config import parse_url
from meshbus.errors import InvalidURL

__all__ = ["DEFAULT_MAX_PAYLOAD", "FileOptions"]

DEFAULT_MAX_PAYLOAD = 1 << 30
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


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
        parts = parse_url(url)
        if parts.netloc not in ("", "localhost"):
            raise InvalidURL(url, "file:// takes an absolute path: file:///shared/queue")
        root = unquote(parts.path)
        if not root.startswith("/"):
            raise InvalidURL(url, "file:// takes an absolute path: file:///shared/queue")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        settings: dict[str, Any] = {**query, **(options or {})}
        try:
            notify = str(settings.pop("notify", "auto")).lower()
            poll_interval = float(settings.pop("poll_interval", 0.05))
            rescan = float(settings.pop("rescan", 1.0))
            fsync = _flag(settings.pop("fsync", True))
            lease = float(settings.pop("lease", 15.0))
            max_payload = int(settings.pop("max_payload", DEFAULT_MAX_PAYLOAD))
        except (TypeError, ValueError) as exc:
            raise InvalidURL(url, f"bad option value: {exc}") from exc
        if settings:
            raise InvalidURL(url, f"unknown file:// options: {', '.join(sorted(settings))}")
        if notify not in ("auto", "inotify", "poll"):
            raise InvalidURL(url, "notify is one of auto, inotify, poll")
        if min(poll_interval, rescan, lease) <= 0 or max_payload < 1:
            raise InvalidURL(url, "poll_interval, rescan, lease and max_payload must be > 0")
        return cls(os.path.normpath(root), notify, poll_interval, rescan, fsync, lease, max_payload)


def _flag(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{value!r} is not a boolean (true/false)")
