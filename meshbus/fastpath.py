"""The switch that turns meshbus's fast paths off: ``MESHBUS_SAFE=1``.

meshbus takes a few shortcuts on its per-message paths: objects built without ``__init__``,
handlers started in the read callback that delivered their message, writes straight to a
selector socket, a client library's private methods. Each one lives in one module per
dependency (``meshbus._aio`` for asyncio, the adapters' ``_compat``/``_wire`` modules for
their client libraries), is checked when that module is imported, and falls back to the plain
public path when the check fails.

With ``MESHBUS_SAFE=1`` in the environment (read once, at import), every one of them takes the
plain path. Behaviour is the same either way; CI runs the conformance suite both ways so that
the plain paths stay correct. Use it to rule meshbus's shortcuts out when you chase a bug, or
on an interpreter or library version meshbus has not been tried on.
"""

from __future__ import annotations

import os
from typing import Final

__all__ = ["SAFE", "enabled"]

SAFE: Final[bool] = os.environ.get("MESHBUS_SAFE", "").strip().lower() not in ("", "0", "false")
"""True when ``MESHBUS_SAFE`` is set (to anything but ``0``/``false``): no fast paths."""


def enabled(check: bool = True) -> bool:
    """Whether a fast path may be used: ``check`` (its own import-time test) and not ``SAFE``."""
    return check and not SAFE
