"""Timers kept out of the event loop's own heap: one clock thread per process.

While any timer is pending in asyncio's heap, each turn of the event loop reads the clock once
more, looks at the heap's head, and waits in the selector with a timeout rather than without
one (what that costs: docs/benchmarks.md#why-the-direct-channel-is-built-as-it-is). A direct
connection's heartbeat and a dialler's request deadlines are pending for as long as they
live.

Here those timers go to a daemon thread instead, which sleeps until the earliest is due and
posts its callback to the timer's event loop with ``call_soon_threadsafe`` (one write to the
loop's wake-up socket, only when a timer fires). The loop waits with no timeout. A callback
runs in its loop, within about a millisecond of its time. Use it for timers that are pending
most of the time; a short wait is better left to asyncio.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import os
import threading
import time
from collections.abc import Callable

__all__ = ["Alarm", "call_at", "sleep"]

_COMPACT_AT = 256  # heap entries from which cancelled alarms are swept once they are half


class Alarm:
    """A callback due at ``when`` (``time.monotonic``) in ``loop``; ``cancel()`` stops it."""

    __slots__ = ("_clock", "callback", "cancelled", "loop", "when")

    def __init__(
        self,
        clock: _Clock,
        when: float,
        loop: asyncio.AbstractEventLoop,
        callback: Callable[[], object],
    ) -> None:
        self._clock = clock
        self.when = when
        self.loop = loop
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        """Do not run the callback (it may already have run: then nothing happens)."""
        if not self.cancelled:
            self.cancelled = True
            self._clock.cancelled += 1

    def _fire(self) -> None:  # in the loop
        if not self.cancelled:
            self.cancelled = True
            self.callback()


class _Clock:
    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, Alarm]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None
        self.cancelled = 0  # cancelled alarms still in the heap, about (counted without a lock)

    def call_at(
        self, when: float, callback: Callable[[], object], loop: asyncio.AbstractEventLoop
    ) -> Alarm:
        alarm = Alarm(self, when, loop, callback)
        with self._cond:
            heap = self._heap
            if len(heap) >= _COMPACT_AT and self.cancelled * 2 >= len(heap):
                heap[:] = [entry for entry in heap if not entry[2].cancelled]
                heapq.heapify(heap)
                self.cancelled = 0
            heapq.heappush(heap, (when, next(self._order), alarm))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="meshbus-clock", daemon=True)
                self._thread.start()
            elif heap[0][2] is alarm:  # due before what the thread sleeps for
                self._cond.notify()
        return alarm

    def _run(self) -> None:
        cond, heap = self._cond, self._heap
        with cond:
            while True:
                while heap and heap[0][2].cancelled:
                    heapq.heappop(heap)
                    self.cancelled -= 1
                if not heap:
                    cond.wait()
                    continue
                delay = heap[0][0] - time.monotonic()
                if delay > 0:
                    cond.wait(delay)
                    continue
                alarm = heapq.heappop(heap)[2]
                try:
                    alarm.loop.call_soon_threadsafe(alarm._fire)
                except RuntimeError:
                    pass  # its event loop is closed: nobody waits for it


_clock = _Clock()


def _after_fork() -> None:
    global _clock
    _clock = _Clock()  # the thread did not come along; its alarms were the parent's


os.register_at_fork(after_in_child=_after_fork)


def call_at(loop: asyncio.AbstractEventLoop, when: float, callback: Callable[[], object]) -> Alarm:
    """Run ``callback()`` in ``loop`` at ``when`` (``time.monotonic``)."""
    return _clock.call_at(when, callback, loop)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def sleep(delay: float) -> None:
    """``asyncio.sleep(delay)`` for a wait that is pending most of the time (a heartbeat's)."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    alarm = _clock.call_at(time.monotonic() + delay, lambda: _wake(future), loop)
    try:
        await future
    finally:
        alarm.cancel()
