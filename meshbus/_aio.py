"""The one place meshbus reaches into asyncio's internals, each checked here with a fallback.

- ``enter_task``/``leave_task`` (``asyncio.tasks._enter_task``/``_leave_task``): ``Bus.serve``
  runs the first step of a handler straight from the callback that delivered its message, with
  the handler's worker task as the current task (see ``meshbus.service``). ``EAGER`` is false
  where the running Python lacks them, and under ``MESHBUS_SAFE=1``; handlers then start in
  their worker task, as any message's would.
- ``writable_fd(transport)``: the socket descriptor behind a plain asyncio selector transport
  (not TLS, not another event loop's), which the direct channel may ``os.writev`` to while
  nothing is queued in the transport; None elsewhere, and under ``MESHBUS_SAFE=1``.
- ``vectored_write(transport)``: its twin for uvloop's plain TCP transport, whose public
  ``writelines`` already gives the pieces to one ``writev`` (uv_try_write) without joining
  them, and keeps what the socket did not take without a copy; None elsewhere (asyncio's
  ``writelines`` joins them on Python 3.11; uvloop's TLS transport encrypts a copy anyway),
  and under ``MESHBUS_SAFE=1``. (uvloop's transport also hands out its descriptor, through a
  pseudo-socket, but ``os.writev`` behind its back saved nothing over joining.)
- ``running_task(loop)``: the running task of a loop read from ``asyncio.tasks._current_tasks``
  without ``asyncio.current_task``'s own Python frame; ``asyncio.current_task`` where that
  table is not there (uvloop keeps it too; other loops may not) or under ``MESHBUS_SAFE=1``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any, cast

from meshbus.fastpath import enabled

__all__ = ["EAGER", "enter_task", "leave_task", "running_task", "vectored_write", "writable_fd"]

_TaskSwitch = Callable[[asyncio.AbstractEventLoop, "asyncio.Task[Any]"], None]


def _no_switch(loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> None:
    raise RuntimeError("task switching is not available (EAGER is false)")


_enter: _TaskSwitch | None = getattr(asyncio.tasks, "_enter_task", None)
_leave: _TaskSwitch | None = getattr(asyncio.tasks, "_leave_task", None)

EAGER: bool = enabled(callable(_enter) and callable(_leave))
"""Whether a handler may be started outside its task with ``enter_task``/``leave_task``."""

enter_task: _TaskSwitch = _enter if EAGER and _enter is not None else _no_switch
"""Make ``task`` the current task of ``loop`` (only where ``EAGER``)."""
leave_task: _TaskSwitch = _leave if EAGER and _leave is not None else _no_switch
"""Undo ``enter_task`` (only where ``EAGER``)."""

_current_tasks: object = getattr(asyncio.tasks, "_current_tasks", None)
running_task: Callable[[asyncio.AbstractEventLoop | None], asyncio.Task[Any] | None] = (
    _current_tasks.get if isinstance(_current_tasks, dict) and enabled() else asyncio.current_task
)
"""The running task of ``loop``, or None."""


_WRITEV = enabled(hasattr(os, "writev"))  # not on Windows


def writable_fd(transport: asyncio.BaseTransport) -> int | None:
    """The descriptor of the socket behind ``transport`` where it is asyncio's own selector
    socket transport without TLS (whose writes may be done with ``os.writev`` while its own
    buffer is empty); None otherwise."""
    if not _WRITEV or type(transport).__name__ != "_SelectorSocketTransport":
        return None
    sock = transport.get_extra_info("socket")
    if sock is None or transport.get_extra_info("sslcontext") is not None:
        return None
    fd: int = sock.fileno()
    return fd


_UVLOOP_STREAMS = frozenset({("uvloop.loop", "TCPTransport"), ("uvloop.loop", "UnixTransport")})


def vectored_write(transport: asyncio.BaseTransport) -> Callable[[list[bytes]], None] | None:
    """``transport.writelines`` where it writes its pieces with one vectored call and no join
    (uvloop's plain stream transports); None otherwise."""
    kind = type(transport)
    if not enabled() or (kind.__module__, kind.__name__) not in _UVLOOP_STREAMS:
        return None
    return cast(asyncio.WriteTransport, transport).writelines  # its interface, not its class
