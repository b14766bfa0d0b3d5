"""Handlers: ``bus.serve(subject, handler)`` runs ``handler`` for each message and settles it.

What the handler returns is the reply when the message is a request; otherwise the message is
acked. A handler that raises has its message rejected to the group's dead-letter subject (or,
with ``on_error="nack"``, delivered again; or handed to an ``on_error`` function, which settles
it), the error logged on the ``meshbus.serve`` logger. A handler that settles or responds
itself is left to it. With ``max_deliver``, a message delivered more times than that is
dead-lettered without reaching the handler.

On a channel whose subscriptions can push (the memory channel's groups and the groups a direct
listener serves: a ``PushSubscription``), a handler is started at once from whatever delivered
the message — for a direct peer's request, the connection's read callback — and runs there
until it first waits for something; only then does it go on in its worker task. A handler
that never waits (the usual request handler: compute, return) answers without a trip through
the event loop. While it runs there, ``asyncio.current_task()`` is its worker task, as it is
afterwards, so ``asyncio.timeout`` and the like behave as in any task (``meshbus._aio``;
where asyncio lacks what that needs, or under ``MESHBUS_SAFE=1``, handlers start in their
worker task). Elsewhere the workers read the subscription themselves.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import types
from collections.abc import Awaitable, Callable, Generator
from types import CoroutineType
from typing import TYPE_CHECKING, Any, Literal

from meshbus._aio import EAGER, enter_task, leave_task, running_task
from meshbus._link import Link
from meshbus._resource import AsyncResource
from meshbus.errors import Closed
from meshbus.message import Message, too_many_deliveries
from meshbus.subscription import Subscription

if TYPE_CHECKING:
    from meshbus.bus import Bus

__all__ = ["Handler", "Service"]

log = logging.getLogger("meshbus.serve")

Handler = Callable[[Message], Awaitable[Any] | Any]
"""``handler(message)``: an ``async def`` (or a plain function); its result is the reply."""
ErrorPolicy = Callable[[Message, BaseException], Awaitable[None]]
"""``on_error(message, error)``: settles the message of a handler that raised ``error``."""
OnError = Literal["reject", "nack"] | ErrorPolicy

_current_task = asyncio.current_task

_NEW, _OPEN, _CLOSED = range(3)
_TURNS = 32  # messages a worker handles back to back before it lets the event loop run
_FIRST_PAUSE, _LAST_PAUSE = 0.05, 5.0  # seconds a worker waits after a failed read, doubling


class _Idle:
    """What a worker's pump yields when it is done with a message and waits for the next."""

    __slots__ = ()


_IDLE = _Idle()


class _Resume:
    """Awaited by a worker: carries on its pump (see ``Service._pump``) from ``first`` (what
    the pump yielded to the event loop) until the message is done with."""

    __slots__ = ("first", "pump")

    def __init__(self, pump: Generator[Any, Any, None], first: Any) -> None:
        self.pump = pump
        self.first = first

    def __await__(self) -> Generator[Any, Any, None]:
        pump, value = self.pump, self.first
        while value is not _IDLE:
            try:
                sent = yield value  # the task waits on it, as it would have for the coroutine
            except BaseException as exc:  # a cancellation (or anything thrown) goes inside
                value = pump.throw(exc)
            else:
                value = pump.send(sent)


class _Worker:
    """One of a service's ``concurrency`` slots: a task, idle while ``job`` is pending, and
    the pump that runs its handlers."""

    __slots__ = ("context", "job", "pump", "task")

    def __init__(self, service: Service, loop: asyncio.AbstractEventLoop) -> None:
        self.context = contextvars.copy_context()
        self.job: asyncio.Future[Message | _Resume | None] = loop.create_future()
        self.task: asyncio.Task[None]  # set once made, right after the worker
        self.pump = service._primed_pump()


class _Waker:
    """Armed in the channel while a worker is idle; wakes the service when a message may be
    taken (a ``meshbus.transport.Wakeable``)."""

    __slots__ = ("fired", "service")

    def __init__(self, service: Service) -> None:
        self.service = service
        self.fired = False

    def done(self) -> bool:
        return self.fired

    def set_result(self, result: None, /) -> None:
        if self.fired:  # as a future that is done: the channel wakes the next waiter instead
            raise asyncio.InvalidStateError("this waker has fired")
        self.fired = True
        self.service._waker = None
        self.service._offer()


class Service(AsyncResource):
    """``handler`` run for each message on one subject pattern (see the module docstring).

    Made by ``Bus.serve``; active once entered (``async with``) or awaited. At most
    ``concurrency`` handlers run at once, and a message is taken from the channel only when
    one of them is free, so the others of its group get the rest. ``close()`` (or leaving the
    block) drains as a subscription does: nothing new is taken, running handlers get until the
    timeout to finish, and unsettled group messages go back to the group.
    """

    def __init__(
        self,
        subscription: Subscription,
        handler: Handler,
        concurrency: int,
        on_error: OnError,
        *,
        link: Link,
        max_deliver: int | None = None,
    ) -> None:
        self.bus: Bus = subscription.bus
        self._link = link
        self.pattern = subscription.pattern
        self.handler = handler
        self.group = subscription.group
        self.concurrency = concurrency
        self.on_error = on_error
        self.max_deliver = max_deliver
        self._sub = subscription
        self._state = _NEW
        self._workers: list[_Worker] = []
        self._idle: list[_Worker] = []
        self._poll: Callable[[_Waker], Message | None] | None = None
        # respond + ack at once, for a request taken by _poll whose reply is bytes
        self._answer: Callable[[Message, bytes], bool] | None = None
        self._waker: _Waker | None = None
        self._offering = False
        self._read_lock = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop  # set by start()

    async def start(self) -> Service:
        """Subscribe and start the workers; return ``self``."""
        if self._state == _OPEN:
            return self
        if self._state == _CLOSED:
            raise Closed("this service is closed")
        await self._sub.start()
        self._link.closed(self._sub)  # closed by this service, after its waker
        self._link.opened(self)
        loop = self._loop = asyncio.get_running_loop()
        part = self._sub.pushable()
        if part is not None:
            self._poll, self._answer = part.poll, part.answer
        for _ in range(self.concurrency):
            worker = _Worker(self, loop)
            work = self._work(worker) if self._poll is not None else self._read(worker)
            worker.task = loop.create_task(work, context=worker.context)
            self._workers.append(worker)
        self._state = _OPEN
        if self._poll is not None:
            self._idle = list(self._workers)
            self._offer()
        return self

    # -- push delivery -----------------------------------------------------------------------

    def _offer(self) -> None:
        """Take messages while a worker is idle; arm a waker for the next one otherwise.

        The first message taken runs at once, as its worker's task, where nothing else runs
        as a task (a read callback): until it first waits, or to its end. Any backlog goes
        through the workers, which yield to the event loop now and then (a handler that nacks
        its message again and again must not starve it)."""
        if self._offering or self._state != _OPEN:
            return
        self._offering = True
        poll, idle, loop = self._poll, self._idle, self._loop
        assert poll is not None
        eager = EAGER and running_task(loop) is None
        waker: _Waker | None = None
        try:
            while idle:
                if waker is None:  # kept while poll gives messages (it is armed only on None)
                    waker = _Waker(self)
                message = poll(waker)
                if message is None:
                    self._waker = waker
                    return
                worker = idle.pop()
                if not eager:
                    worker.job.set_result(message)
                    continue
                eager = False
                task = worker.task
                enter_task(loop, task)
                try:
                    first = worker.context.run(worker.pump.send, message)
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException:  # the pump lets only a cancellation out; none is due here
                    log.exception("handler for %r stopped outside its task", self.pattern)
                    worker.pump = self._primed_pump()  # that one has ended
                    idle.append(worker)
                    continue
                finally:
                    leave_task(loop, task)
                if first is _IDLE:
                    idle.append(worker)  # done without waiting: the worker never woke
                    continue
                worker.job.set_result(_Resume(worker.pump, first))
        finally:
            self._offering = False

    async def _work(self, worker: _Worker) -> None:
        """A worker of a pushing channel: runs what ``_offer`` hands it."""
        loop = asyncio.get_running_loop()
        turns = 0
        while True:
            job = await worker.job
            if job is None:
                return
            if type(job) is _Resume:
                await job
            else:
                assert isinstance(job, Message)
                await _Resume(worker.pump, worker.pump.send(job))
                turns += 1
                if turns == _TURNS:  # handlers that never wait, back to back: let others run
                    turns = 0
                    await asyncio.sleep(0)
            worker.job = loop.create_future()
            self._idle.append(worker)
            self._offer()

    # -- pull delivery -------------------------------------------------------------------------

    async def _read(self, worker: _Worker) -> None:
        """A worker of any other channel: reads the next message when free, one at a time."""
        sub = self._sub
        turns = 0
        pause = _FIRST_PAUSE
        while True:
            async with self._read_lock:
                try:
                    message = await sub.__anext__()
                except StopAsyncIteration:
                    return
                except Exception:  # the channel failed to deliver: not the end of the service
                    log.exception("service on %r could not read its subscription", self.pattern)
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, _LAST_PAUSE)
                    continue
            pause = _FIRST_PAUSE
            await _Resume(worker.pump, worker.pump.send(message))
            turns += 1
            if turns == _TURNS:  # as in _work
                turns = 0
                await asyncio.sleep(0)

    # -- one message ---------------------------------------------------------------------------

    def _primed_pump(self) -> Generator[Any, Any, None]:
        pump = self._pump()
        next(pump)  # to its first yield: ready to be sent a message
        return pump

    @types.coroutine
    def _pump(self) -> Generator[Any, Any, None]:
        """A worker's handler loop, as one generator kept for the worker's life: sent a
        message, it runs the handler on it and settles it, yielding whatever the handler
        waits on, then yields ``_IDLE`` for the next. A handler that never waits so costs no
        coroutine of its own, nor the ``StopIteration`` that ends one."""
        handler, answer, limit = self.handler, self._answer, self.max_deliver
        while True:
            message: Message = yield _IDLE
            try:
                if limit is not None and message.attempt > limit:
                    yield from too_many_deliveries(message, limit)
                    continue
                result = handler(message)
                if type(result) is CoroutineType:  # an async def handler's
                    result = yield from result  # type: ignore[misc]  # allowed by types.coroutine
                elif hasattr(result, "__await__"):
                    result = yield from result.__await__()
                if not message.settled:
                    if message.reply_to is not None:
                        if type(result) is bytes and answer is not None and answer(message, result):
                            continue
                        yield from message.respond(result)
                    else:
                        yield from message.ack()
            except asyncio.CancelledError as exc:
                task = _current_task()
                if task is not None and task.cancelling():
                    raise  # the worker is being stopped: the message goes back with the close
                yield from self._failed(message, exc)
            except Exception as exc:
                yield from self._failed(message, exc)

    async def _failed(self, message: Message, exc: BaseException) -> None:
        if callable(self.on_error):  # the policy says what happened, and logs it
            try:
                await self.on_error(message, exc)
            except Exception:
                log.exception("could not settle message %s after its handler failed", message.id)
            return
        log.error(
            "handler for %r failed on message %s (attempt %d) of %r: %r",
            self.pattern,
            message.id or "?",
            message.attempt,
            message.subject,
            exc,
            exc_info=exc,
        )
        if message.settled:
            return
        try:
            if self.on_error == "nack":
                await message.nack()
            else:
                await message.reject(f"handler raised {type(exc).__name__}: {exc}")
        except Exception:
            log.exception("could not settle message %s after its handler failed", message.id)

    # -- closing -------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once ``close()`` has begun."""
        return self._state == _CLOSED

    @property
    def attached(self) -> bool:
        """True while its subscription is active where deliveries come from (a broker
        consumer registered, a direct listener's interest announced, a file group joined)
        and it is not closing."""
        return self._state == _OPEN

    async def close(self, timeout: float | None = None) -> None:
        """Take nothing new, give running handlers up to ``timeout`` (default the bus's
        ``drain_timeout``) to finish, give unsettled group messages back (idempotent)."""
        if self._state == _CLOSED:
            return
        was_open = self._state == _OPEN
        self._state = _CLOSED
        self._link.closed(self)
        if not was_open:
            return
        if self._waker is not None:
            self._waker.fired = True  # the channel skips it from now on
            self._waker = None
        loop = asyncio.get_running_loop()
        budget = self._link.drain_timeout if timeout is None else timeout
        deadline = loop.time() + budget
        await self._sub.close(budget)  # waits for running handlers to settle, up to budget
        tasks = [w.task for w in self._workers]
        for worker in self._workers:
            if not worker.job.done():
                worker.job.set_result(None)  # an idle pushing worker: stop
        current = _current_task()
        waiting = [t for t in tasks if t is not current]
        if waiting:
            _, late = await asyncio.wait(waiting, timeout=max(0.0, deadline - loop.time()))
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    def __repr__(self) -> str:
        group = f", group={self.group!r}" if self.group else ""
        return f"Service({self.pattern!r}{group}, concurrency={self.concurrency})"
