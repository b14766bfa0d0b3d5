"""``meshbus.App``: a service written as handlers, run on whatever channel the deployment picks.

::

    app = meshbus.App("billing")          # the service's name: also its handlers' group

    @app.handle("orders.created", retry=meshbus.Retry(attempts=5, backoff=0.5))
    async def bill(order: Order, bus: meshbus.Bus) -> None:   # decoded and validated once
        await bus.publish("invoices.ready", {"order": order.id})

    @app.handle("pricing.quote")          # a request's reply is the return value
    async def quote(sku: str) -> float:
        return 9.5

The channel comes from ``MESHBUS_URL`` / ``MESHBUS_ROUTES`` / ``MESHBUS_LISTEN`` (or
``App(name, url=..., routes=..., listen=...)``); ``meshbus run module:app`` runs it, and
``app.test()`` runs it in a test. See docs/app.md.

Each handler is a ``Bus.serve`` of its subject: by default in the group named after the app, so
each message is handled once per service however many replicas run (``broadcast=True``: every
replica gets every message). A payload that does not decode into the handler's annotation is
dead-lettered at once with the reason; a handler that raises (or outlives its ``timeout``) is
retried by its :class:`~meshbus.Retry` policy and dead-lettered when the attempts run out; a
message delivered more than the policy's attempts (a replica that died holding it, again and
again) is dead-lettered too (``max_deliver``, contract point 12).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from meshbus._params import InvalidPayload, bind, is_async
from meshbus.bus import DEFAULT_DRAIN_TIMEOUT, DEFAULT_PREFETCH, Bus, connect
from meshbus.errors import ConfigurationError, NotStarted, StartupFailed
from meshbus.health import AppHealth, HandlerHealth
from meshbus.message import Message
from meshbus.retry import Retry
from meshbus.service import Service
from meshbus.subjects import validate_group, validate_pattern, validate_subject

if TYPE_CHECKING:
    from meshbus.testing.app import AppTest

__all__ = ["App"]

log = logging.getLogger("meshbus.app")

F = TypeVar("F", bound=Callable[..., Any])
Hook = Callable[[], Awaitable[None] | None]
Observer = Callable[[str, Message, Any, BaseException | None], None]
Lifespan = Callable[["App"], contextlib.AbstractAsyncContextManager[None]]


@dataclass(slots=True)
class _Handler:
    """One ``@app.handle`` registration."""

    subject: str
    function: Callable[..., Any]
    group: str | None
    retry: Retry
    timeout: float | None
    concurrency: int
    publish: str | None
    prefetch: int | None
    call: Callable[[Message], Any] = field(init=False)
    service: Service | None = None


class App:
    """A service: handlers, hooks around the bus's life, health (see the module docstring)."""

    def __init__(
        self,
        name: str,
        *,
        url: str | None = None,
        routes: Mapping[str, str] | None = None,
        listen: str | None = None,
        options: Mapping[str, Mapping[str, Any]] | None = None,
        lifespan: Lifespan | None = None,
        retry: Retry | None = None,
        drain_timeout: float = DEFAULT_DRAIN_TIMEOUT,
    ) -> None:
        validate_group(name)  # it is the default group: the same rules
        self.name = name
        self.url = url
        self.routes = routes
        self.listen = listen
        self.options = options
        self.lifespan = lifespan
        self.retry = retry or Retry()
        """The policy of handlers that give none."""
        self.drain_timeout = drain_timeout
        self.handlers: list[_Handler] = []
        self._startup: list[Hook] = []
        self._shutdown: list[Hook] = []
        self._after_startup: list[Hook] = []
        self._bus: Bus | None = None
        self._state: Literal["new", "starting", "running", "stopping", "stopped"] = "new"
        self._stack: contextlib.AsyncExitStack | None = None
        self._stopped: asyncio.Event | None = None
        self._owns_bus = False
        self._observer: Observer | None = None

    # -- declaring ------------------------------------------------------------------------------

    def handle(
        self,
        subject: str,
        *,
        group: str | None = None,
        broadcast: bool = False,
        retry: Retry | None = None,
        timeout: float | None = None,
        concurrency: int = 1,
        publish: str | None = None,
        prefetch: int | None = None,
    ) -> Callable[[F], F]:
        """Handle the messages on ``subject`` (a pattern may have wildcards) with the decorated
        function. Its group is the app's name unless ``group`` says otherwise; with
        ``broadcast=True`` every replica gets every message. ``retry`` (default the app's)
        decides what a failure does; ``timeout`` (seconds, ``async def`` only) cancels a
        handler that runs too long, which counts as a failure; ``concurrency`` handlers run at
        once; ``publish`` publishes what the handler returns to that subject (a pipeline
        stage). Several ``@app.handle`` may decorate one function."""
        validate_pattern(subject)
        if broadcast and group is not None:
            raise ConfigurationError("a handler is either broadcast or in a group, not both")
        chosen = None if broadcast else (group or self.name)
        if chosen is not None:
            validate_group(chosen)
        if publish is not None:
            validate_subject(publish)
        if timeout is not None and not timeout > 0:
            raise ConfigurationError(f"timeout must be > 0 seconds, got {timeout!r}")
        if type(concurrency) is not int or concurrency < 1:
            raise ConfigurationError(f"concurrency must be a whole number >= 1, not {concurrency}")
        if retry is not None and not isinstance(retry, Retry):
            raise ConfigurationError(f"retry must be a meshbus.Retry, not {type(retry).__name__}")
        for other in self.handlers:
            if other.subject == subject and other.group == chosen and chosen is not None:
                raise ConfigurationError(
                    f"two handlers for {subject!r} in group {chosen!r} "
                    f"({other.function.__qualname__} and another): each message would go to "
                    "only one of them; give one another group"
                )

        def register(function: F) -> F:
            if not callable(function):
                raise ConfigurationError(f"@app.handle decorates a function, not {function!r}")
            if timeout is not None and not is_async(function):
                raise ConfigurationError(
                    f"handler {function.__qualname__!r}: timeout= needs an async def handler "
                    "(a plain function cannot be cancelled)"
                )
            entry = _Handler(
                subject,
                function,
                chosen,
                retry or self.retry,
                timeout,
                concurrency,
                publish,
                prefetch,
            )
            entry.call = self._wrap(entry, bind(function, lambda: self.bus))
            self.handlers.append(entry)
            return function

        return register

    def on_startup(self, hook: F) -> F:
        """Run ``hook()`` (a function or ``async def``) once the bus is connected, before any
        handler takes a message; in the order they were added."""
        self._startup.append(hook)
        return hook

    def after_startup(self, hook: F) -> F:
        """Run ``hook()`` once every handler is attached (the app is about to report ready);
        in the order they were added. A failing one fails the start."""
        self._after_startup.append(hook)
        return hook

    def on_shutdown(self, hook: F) -> F:
        """Run ``hook()`` once the handlers have drained, before the bus closes (it may still
        publish); in the reverse order they were added."""
        self._shutdown.append(hook)
        return hook

    def _wrap(self, entry: _Handler, call: Callable[[Message], Any]) -> Callable[[Message], Any]:
        """What the handler's service runs: the typed call, bounded by ``timeout`` and
        followed by ``publish`` where asked."""
        if entry.timeout is None and entry.publish is None:
            return call
        timeout, publish = entry.timeout, entry.publish

        async def bounded(message: Message) -> Any:
            result = call(message)
            if timeout is not None:
                async with asyncio.timeout(timeout):
                    result = await result
            elif hasattr(result, "__await__"):
                result = await result
            if publish is not None and result is not None:
                await self.bus.publish(publish, result, key=message.key)
            return result

        return bounded

    # -- running --------------------------------------------------------------------------------

    @property
    def bus(self) -> Bus:
        """The app's bus, once started (to publish from hooks and handlers)."""
        if self._bus is None:
            raise NotStarted(f"app {self.name!r} is not started")
        return self._bus

    @property
    def state(self) -> Literal["new", "starting", "running", "stopping", "stopped"]:
        return self._state

    async def start(self, *, url: str | None = None, bus: Bus | None = None) -> App:
        """Connect, run the startup hooks and the lifespan, then attach every handler; return
        ``self``. ``StartupFailed`` (after undoing what was done) if any step fails.

        ``url`` overrides the app's own; ``bus`` runs the app on a bus made elsewhere (already
        started), which it then leaves open when it stops."""
        if self._state not in ("new", "stopped"):
            raise ConfigurationError(f"app {self.name!r} is {self._state} already")
        for entry in self.handlers:
            entry.service = None
        if not self.handlers:
            log.info("app %r has no handlers", self.name)
        self._state = "starting"
        stack = self._stack = contextlib.AsyncExitStack()
        try:
            if bus is None:
                bus = connect(
                    url or self.url,
                    routes=self.routes,
                    listen=self.listen,
                    options=self.options,
                    drain_timeout=self.drain_timeout,
                )
                self._bus = bus
                self._owns_bus = True
                await bus.start()
                stack.push_async_callback(bus.close)
            else:
                self._bus = bus
                self._owns_bus = False
            for hook in self._startup:
                await _run(hook)
            if self.lifespan is not None:
                await stack.enter_async_context(self.lifespan(self))
            stack.push_async_callback(self._run_shutdown_hooks)
            for entry in self.handlers:
                entry.service = await bus.serve(
                    entry.subject,
                    self._observed(entry) if self._observer is not None else entry.call,
                    group=entry.group,
                    concurrency=entry.concurrency,
                    prefetch=entry.prefetch or DEFAULT_PREFETCH,
                    on_error=self._on_error(entry),
                    max_deliver=entry.retry.attempts if entry.group is not None else None,
                )
            for hook in self._after_startup:
                await _run(hook)
        except BaseException as exc:
            self._state = "stopping"
            with contextlib.suppress(Exception):
                await self._close_services(0)
                await stack.aclose()
            self._state = "stopped"
            if isinstance(exc, Exception):
                raise StartupFailed(f"app {self.name!r} did not start: {exc}") from exc
            raise
        if self._state == "starting":  # not when a stop began meanwhile (begin_stop)
            self._state = "running"
        log.info("app %r running: %d handlers", self.name, len(self.handlers))
        return self

    def begin_stop(self) -> None:
        """Not ready from now on (a stop signal came; ``stop()`` follows)."""
        if self._state in ("starting", "running"):
            self._state = "stopping"

    async def stop(self, timeout: float | None = None) -> None:
        """Stop: not ready at once, handlers drained (up to ``timeout``, default
        ``drain_timeout``), shutdown hooks, the bus closed. A second call waits for the
        first."""
        if self._state in ("new", "stopped"):
            self._state = "stopped"
            return
        if self._stopped is not None:
            await self._stopped.wait()
            return
        self._stopped = asyncio.Event()
        self._state = "stopping"
        budget = self.drain_timeout if timeout is None else timeout
        try:
            if self._owns_bus and self._bus is not None and not self._bus.closed:
                # Direct peers stop sending first, what was accepted is handled, then every
                # handler drains; the bus stays open for the shutdown hooks.
                await self._bus.drain(budget)
            else:
                await self._close_services(budget)
            if self._stack is not None:
                await self._stack.aclose()
        finally:
            self._state = "stopped"
            self._stopped.set()
            self._stopped = None

    async def _close_services(self, timeout: float) -> None:
        services = [e.service for e in self.handlers if e.service is not None]
        await asyncio.gather(*(s.close(timeout) for s in services), return_exceptions=True)

    async def _run_shutdown_hooks(self) -> None:
        for hook in reversed(self._shutdown):
            try:
                await _run(hook)
            except Exception:
                log.exception("shutdown hook %r of app %r failed", hook, self.name)

    async def __aenter__(self) -> App:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def health(self) -> AppHealth:
        """Per channel whether it is connected, per handler whether it is attached, and so
        whether the app is ready (``AppHealth.ready``)."""
        channels = tuple(self._bus.health()) if self._bus is not None else ()
        handlers = tuple(
            HandlerHealth(e.subject, e.group, e.service is not None and e.service.attached)
            for e in self.handlers
        )
        return AppHealth(self.name, self._state, channels, handlers)

    # -- failures -------------------------------------------------------------------------------

    def _on_error(self, entry: _Handler) -> Callable[[Message, BaseException], Awaitable[None]]:
        retry = entry.retry

        async def settle(message: Message, error: BaseException) -> None:
            where = (entry.subject, message.id or "?", message.attempt, message.subject)
            if isinstance(error, InvalidPayload):
                log.warning("handler for %r: message %s (attempt %d) of %r: %s", *where, error)
                await message.reject(f"invalid payload: {error}")
                return
            if isinstance(error, TimeoutError) and entry.timeout is not None:
                reason = f"handler timed out after {entry.timeout:g} s"
            else:
                reason = f"{type(error).__name__}: {error}"
            broadcast = entry.group is None  # never redelivered: nothing to retry
            gives_up = broadcast or retry.gives_up(message.attempt)
            log.log(
                logging.ERROR if gives_up else logging.WARNING,
                "handler for %r failed on message %s (attempt %d) of %r: %s; %s",
                *where,
                reason,
                "dropped (broadcast)" if broadcast else "dead-lettered" if gives_up else "retried",
                exc_info=error if gives_up else None,
            )
            if message.settled:
                return
            if broadcast:
                await message.ack()
            elif gives_up:
                await message.reject(f"{reason} (attempt {message.attempt} of {retry.attempts})")
            else:
                await message.nack(delay=retry.delay(message.attempt))

        return settle

    # -- testing --------------------------------------------------------------------------------

    def _observed(self, entry: _Handler) -> Callable[[Message], Any]:
        call, observer = entry.call, self._observer
        assert observer is not None

        async def observed(message: Message) -> Any:
            try:
                result = call(message)
                if hasattr(result, "__await__"):
                    result = await result
            except BaseException as exc:
                observer(entry.subject, message, None, exc)
                raise
            observer(entry.subject, message, result, None)
            return result

        return observed

    def observe(self, observer: Observer | None) -> None:
        """Have ``observer(handler_subject, message, result, error)`` called after each
        handler call from the next start on (``app.test()`` records calls with it); None
        stops it."""
        self._observer = observer

    def test(self, url: str | None = None) -> AppTest:
        """Run the app in a test: ``async with app.test() as t:`` starts it on a fresh
        ``memory://`` (or ``url``), with ``t.publish``, ``t.request`` and ``t.handled``."""
        from meshbus.testing.app import AppTest

        return AppTest(self, url)

    def __repr__(self) -> str:
        return f"App({self.name!r}, handlers={len(self.handlers)}, state={self._state!r})"


async def _run(hook: Hook) -> None:
    """Call a hook, a plain function or an ``async def``."""
    result = hook()
    if result is not None:
        await result
