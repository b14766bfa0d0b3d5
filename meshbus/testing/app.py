"""Testing an app: ``async with app.test() as t:`` runs it for real on a fresh ``memory://``
(or the URL given), and records what each handler did.

::

    async with app.test() as t:
        await t.publish("orders.created", {"id": 7, "total": 9.5})
        [done] = await t.handled("orders.created")
        assert done.error is None
        reply = await t.request("pricing.quote", "A1")
"""

from __future__ import annotations

import asyncio
import itertools
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from meshbus.errors import MeshbusTimeout
from meshbus.message import Message
from meshbus.subjects import SubjectIndex

if TYPE_CHECKING:
    from meshbus.app import App

__all__ = ["AppTest", "Handled"]

_runs = itertools.count(1)


@dataclass(frozen=True, slots=True)
class Handled:
    """One call of a handler: the message, what the handler returned, or what it raised."""

    handler: str
    """The subject (pattern) the handler was registered for."""
    message: Message
    result: Any
    error: BaseException | None


class HandledTimeout(MeshbusTimeout):
    """Fewer messages were handled than ``AppTest.handled`` waited for."""


class AppTest:
    """A running app under test (see the module docstring)."""

    def __init__(self, app: App, url: str | None = None) -> None:
        self.app = app
        self.url = url or f"memory://test-{app.name}-{os.getpid()}-{next(_runs)}"
        self.calls: list[Handled] = []
        """Every handler call so far, in the order they ended."""
        self._changed = asyncio.Event()

    def _record(
        self, handler: str, message: Message, result: Any, error: BaseException | None
    ) -> None:
        self.calls.append(Handled(handler, message, result, error))
        self._changed.set()

    async def __aenter__(self) -> AppTest:
        self.app.observe(self._record)
        try:
            await self.app.start(url=self.url)
        except BaseException:
            self.app.observe(None)
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.app.stop()
        finally:
            self.app.observe(None)

    async def publish(self, subject: str, payload: object, **kwargs: Any) -> str:
        """``Bus.publish`` on the app's bus."""
        return await self.app.bus.publish(subject, payload, **kwargs)

    async def request(self, subject: str, payload: object, **kwargs: Any) -> Message:
        """``Bus.request`` on the app's bus."""
        return await self.app.bus.request(subject, payload, **kwargs)

    async def handled(self, subject: str, n: int = 1, *, timeout: float = 5.0) -> list[Handled]:
        """Wait until ``n`` calls have ended for messages on ``subject`` (a pattern may have
        wildcards); return them (successes and failures, in the order they ended).
        ``HandledTimeout`` after ``timeout`` seconds."""
        index: SubjectIndex[str] = SubjectIndex()
        index.add(subject, subject)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    found = [c for c in self.calls if index.lookup(c.message.subject)]
                    if len(found) >= n:
                        return found[:n]
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise HandledTimeout(
                f"{len(found)} of {n} messages on {subject!r} handled within {timeout:g} s"
            ) from None
