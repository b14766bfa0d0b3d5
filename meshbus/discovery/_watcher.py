"""Watch a service: its current addresses, kept fresh, and the changes as they happen."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Self

from meshbus._resource import AsyncResource
from meshbus.discovery._sources import DnsSource, Source
from meshbus.errors import Closed, ConfigurationError, LookupFailed

__all__ = ["WatchEvent", "Watcher"]

logger = logging.getLogger("meshbus.discovery")


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """A change in a watched set: what was ``added``, what was ``removed``, and the set after."""

    added: frozenset[str]
    removed: frozenset[str]
    addresses: frozenset[str]


class Watcher(AsyncResource):
    """The current addresses of a service, re-resolved in the background.

    ``source`` is a :class:`~meshbus.discovery.Source` or a DNS name (a
    :class:`~meshbus.discovery.DnsSource` with the system's nameserver). ``await watcher`` or
    ``async with watcher`` does the first lookup — a failed one raises
    :class:`~meshbus.errors.LookupFailed`, as a first connect fails fast; a definite "none" starts
    with an empty set — then the watcher re-resolves:

    - every ``interval`` seconds, jittered by ±``jitter`` (a fraction), so that replicas that
      started together do not ask together;
    - at once when asked (:meth:`refresh_now`, :meth:`suspect`), but no more often than once per
      ``min_refresh_interval`` seconds: requests inside that window are merged into one lookup
      at its end.

    Rules for the set (:attr:`addresses`):

    - A new address is added as soon as one good answer lists it.
    - A failed lookup (timeout, SERVFAIL, malformed) changes nothing: the last good set stays.
      It neither counts as an absence nor breaks a run of them.
    - An address missing from answers is removed only when both hold: it was absent from
      ``absent_threshold`` consecutive good answers, and a connection to it failed
      (:meth:`suspect`) since the last one that succeeded (:meth:`reachable`). An address that
      DNS no longer lists but that still takes connections — a replica being scaled down and
      draining, or a DNS answer that is briefly wrong — stays until a connection to it fails;
      then it goes at once. One bad answer never removes anything.

    Changes reach ``on_change(event)`` (called in the event loop; keep it quick — its errors are
    logged) and every iterator from :meth:`events`.
    """

    def __init__(
        self,
        source: Source | str,
        *,
        interval: float = 5.0,
        jitter: float = 0.2,
        absent_threshold: int = 2,
        min_refresh_interval: float = 1.0,
        on_change: Callable[[WatchEvent], object] | None = None,
    ) -> None:
        if interval <= 0 or not 0 <= jitter < 1 or min_refresh_interval < 0:
            raise ConfigurationError(
                "need interval > 0, 0 <= jitter < 1, min_refresh_interval >= 0"
            )
        if absent_threshold < 1:
            raise ConfigurationError(f"absent_threshold must be at least 1: {absent_threshold}")
        self.source: Source = DnsSource(source) if isinstance(source, str) else source
        self.interval = interval
        self.jitter = jitter
        self.absent_threshold = absent_threshold
        self.min_refresh_interval = min_refresh_interval
        self.on_change = on_change
        self.last_error: Exception | None = None
        """The error of the most recent lookup, ``None`` after a good answer."""
        self._addresses: frozenset[str] = frozenset()
        self._absent: dict[str, int] = {}
        self._suspected: set[str] = set()
        self._iterators: weakref.WeakSet[_Changes] = weakref.WeakSet()
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()
        self._started_rounds = 0
        self._done_rounds = 0
        self._last_lookup = float("-inf")
        self._task: asyncio.Task[None] | None = None
        self._state = 0  # 0 new, 1 running, 2 closed

    @property
    def addresses(self) -> frozenset[str]:
        """The current set of addresses."""
        return self._addresses

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._state == 2

    async def start(self) -> Self:
        """Do the first lookup and start watching; return ``self``."""
        if self._state == 1:
            return self
        if self._state == 2:
            raise Closed("this watcher is closed")
        self._state = 1
        try:
            await self._round(raise_failure=True)
        except BaseException:
            await self.close()
            raise
        self._task = asyncio.create_task(self._run(), name=f"meshbus-watch {self.source!r}")
        return self

    async def close(self) -> None:
        """Stop watching (idempotent); iterators from :meth:`events` end."""
        if self._state == 2:
            return
        self._state = 2
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._signal()

    def refresh_now(self) -> None:
        """Ask for a lookup at once (rate-limited by ``min_refresh_interval``)."""
        if self._state == 1:
            self._wake.set()

    async def refresh(self) -> frozenset[str]:
        """Ask for a lookup (rate-limited), wait until one that began after this call is done,
        and return the set then. A failed lookup leaves the set as it was."""
        if self._state != 1:
            raise Closed("this watcher is not running")
        target = self._started_rounds + 1
        self.refresh_now()
        while self._done_rounds < target:
            if self._state != 1:
                raise Closed("this watcher closed while waiting for a lookup")
            await self._progress.wait()
        return self._addresses

    def suspect(self, address: str) -> None:
        """Report that a connection to ``address`` failed: re-resolve now (rate-limited), and
        remove the address at once if answers have already left it out ``absent_threshold``
        times in a row."""
        if self._state != 1:
            return
        if address in self._addresses:
            self._suspected.add(address)
            if self._absent.get(address, 0) >= self.absent_threshold:
                self._update(self._addresses - {address})
        self.refresh_now()

    def reachable(self, address: str) -> None:
        """Report that a connection to ``address`` succeeded: earlier failures no longer count."""
        self._suspected.discard(address)

    def events(self) -> _Changes:
        """An async iterator of :class:`WatchEvent` for changes after this call; it ends when
        the watcher closes. A consumer that falls behind gets the net change since its last
        event (never a stale set). Read :attr:`addresses` just before for the starting set."""
        changes = _Changes(self)
        self._iterators.add(changes)
        return changes

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            delay = self.interval * random.uniform(1 - self.jitter, 1 + self.jitter)
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
            # arrives as the event is set, and close() would wait for a task that never ends.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            if self._wake.is_set():
                await asyncio.sleep(self._last_lookup + self.min_refresh_interval - loop.time())
            self._wake.clear()
            await self._round(raise_failure=False)

    async def _round(self, *, raise_failure: bool) -> None:
        self._started_rounds += 1
        number = self._started_rounds
        self._last_lookup = asyncio.get_running_loop().time()
        try:
            found = await self.source.resolve()
        except LookupFailed as exc:
            self.last_error = exc
            if raise_failure:
                raise
            logger.warning("keeping %d addresses of %r: %s", len(self._addresses), self.source, exc)
        except Exception as exc:
            if raise_failure:
                raise
            self.last_error = exc
            logger.exception("discovery source %r failed; keeping its last set", self.source)
        else:
            self.last_error = None
            self._apply(found)
        finally:
            self._done_rounds = number
            self._signal()

    def _apply(self, found: frozenset[str]) -> None:
        current = self._addresses
        for address in found:
            self._absent.pop(address, None)
        gone = set()
        for address in current - found:
            self._absent[address] = self._absent.get(address, 0) + 1
            if self._absent[address] >= self.absent_threshold and address in self._suspected:
                gone.add(address)
        self._update((current | found) - gone)

    def _update(self, new: frozenset[str]) -> None:
        old = self._addresses
        if new == old:
            return
        for address in old - new:
            self._absent.pop(address, None)
            self._suspected.discard(address)
        self._addresses = new
        event = WatchEvent(new - old, old - new, new)
        logger.info("%r: +%s -%s", self.source, sorted(event.added), sorted(event.removed))
        if self.on_change is not None:
            try:
                self.on_change(event)
            except Exception:
                logger.exception("on_change callback of a discovery watcher failed")
        self._signal()

    def _signal(self) -> None:
        progress, self._progress = self._progress, asyncio.Event()
        progress.set()
        for changes in self._iterators:
            changes.wake.set()

    def __repr__(self) -> str:
        return f"<Watcher {self.source!r} {sorted(self._addresses)}>"


class _Changes:
    """The iterator :meth:`Watcher.events` returns."""

    def __init__(self, watcher: Watcher) -> None:
        self._watcher = watcher
        self._seen = watcher.addresses
        self.wake = asyncio.Event()

    def __aiter__(self) -> _Changes:
        return self

    async def __anext__(self) -> WatchEvent:
        while True:
            current = self._watcher.addresses
            if current != self._seen:
                event = WatchEvent(current - self._seen, self._seen - current, current)
                self._seen = current
                return event
            if self._watcher.closed:
                raise StopAsyncIteration
            self.wake.clear()
            await self.wake.wait()
