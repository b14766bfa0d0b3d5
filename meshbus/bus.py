"""The bus: one API over every channel, with subjects routed to channels by configuration."""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from meshbus import codec
from meshbus._link import Closeable, Subscribable
from meshbus._resource import AsyncResource
from meshbus.config import BusConfig, parse_url, resolve_config
from meshbus.errors import (
    Closed,
    ConfigurationError,
    MeshbusError,
    NotStarted,
    NotSupported,
    PayloadTooLarge,
)
from meshbus.headers import CONTENT_TYPE, check_user_headers
from meshbus.health import ChannelHealth, ChannelState, redact
from meshbus.kit import BoundedCache
from meshbus.message import Message
from meshbus.registry import TransportRegistry, default_registry
from meshbus.routing import Router
from meshbus.service import Handler, OnError, Service
from meshbus.subjects import validate_group, validate_pattern, validate_subject
from meshbus.subscription import Subscription
from meshbus.transport import (
    Capabilities,
    Envelope,
    Listener,
    ListeningFactory,
    ReportsHealth,
    Transport,
    TransportFactory,
)

__all__ = ["Bus", "Outgoing", "connect"]

DEFAULT_DRAIN_TIMEOUT = 10.0
DEFAULT_PUBLISH_TIMEOUT = 30.0
DEFAULT_REQUEST_TIMEOUT = 5.0
DEFAULT_PREFETCH = 256

_NEW, _OPEN, _CLOSING, _CLOSED = range(4)


@dataclass(slots=True)
class Outgoing:
    """One message for ``Bus.publish_many``."""

    subject: str
    payload: object
    key: str | None = None
    headers: Mapping[str, str] | None = field(default=None)


def connect(
    url: str | None = None,
    *,
    routes: Mapping[str, str] | None = None,
    listen: str | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    registry: TransportRegistry | None = None,
    drain_timeout: float = DEFAULT_DRAIN_TIMEOUT,
    publish_timeout: float = DEFAULT_PUBLISH_TIMEOUT,
) -> Bus:
    """Make a bus for ``url`` (or ``MESHBUS_URL``), with ``routes`` (or ``MESHBUS_ROUTES``)
    sending matching subjects to other channels and ``listen`` (or ``MESHBUS_LISTEN``) serving
    this process's subscriptions to direct peers.

    The bus connects on ``async with`` or ``await``::

        async with meshbus.connect("nats://nats:4222") as bus: ...
        bus = await meshbus.connect("memory://app")

    ``options`` holds per-scheme settings that do not fit in a URL (an ``ssl.SSLContext``, a
    token), e.g. ``{"tcp": {"token": "s3cret"}}``. Configuration errors raise here, before any
    connection is made.
    """
    config = resolve_config(url, routes, listen)
    return Bus(
        config,
        options=options or {},
        registry=registry or default_registry(),
        drain_timeout=drain_timeout,
        publish_timeout=publish_timeout,
    )


class Bus(AsyncResource):
    """Publishes, subscribes and requests over the channels its configuration names.

    Made by :func:`connect`. An async context manager; ``close()`` drains (contract point 10).
    """

    def __init__(
        self,
        config: BusConfig,
        *,
        options: Mapping[str, Mapping[str, Any]],
        registry: TransportRegistry,
        drain_timeout: float,
        publish_timeout: float,
    ) -> None:
        self.config = config
        self.drain_timeout = drain_timeout
        self.publish_timeout = publish_timeout
        self._options = options
        self._registry = registry
        self._state = _NEW
        self._transports: dict[str, Transport] = {}
        self._listener: Listener | None = None
        self._router: Router[Transport] | None = None
        self._route_cache: BoundedCache[str, Transport] = BoundedCache()
        self._subscriptions: set[Closeable] = set()
        self._link = _BusLink(self)
        self._pending = 0
        self._idle: asyncio.Future[None] | None = None  # close() waits on it for _pending 0
        self._id_prefix = os.urandom(6).hex() + "-"
        self._ids = itertools.count(1)
        self._start_lock: asyncio.Lock | None = None
        self._closed_event: asyncio.Event | None = None
        # Made here, without I/O, so that an unknown scheme or a bad URL fails at connect().
        for url in [config.url, *config.routes.values()]:
            if url not in self._transports:
                self._transports[url] = self._make(url)
        if config.listen is not None:
            self._listener = self._make_listener(config.listen)

    # -- lifecycle -------------------------------------------------------------------------

    def _factory(self, url: str) -> tuple[str, TransportFactory]:
        scheme = parse_url(url).scheme.lower()
        return scheme, self._registry.factory(scheme)

    def _make(self, url: str) -> Transport:
        scheme, factory = self._factory(url)
        return factory(url, self._options_for(scheme, factory))

    def _options_for(self, scheme: str, factory: TransportFactory) -> Mapping[str, Any]:
        """``options[scheme]``; failing that, the options given under another scheme that the
        same channel serves (``{"amqp": {...}}`` applies to ``amqps://`` URLs too)."""
        if scheme in self._options:
            return self._options[scheme]
        for other, given in self._options.items():
            try:
                if self._registry.factory(other) is factory:
                    return given
            except MeshbusError:
                continue
        return {}

    async def start(self) -> Bus:
        """Connect every channel the configuration names (idempotent); return ``self``."""
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self._state == _OPEN:
                return self
            if self._state != _NEW:
                raise Closed("this bus is closed; make a new one with meshbus.connect()")
            started: list[Transport | Listener] = []
            try:
                # The listener first: the peers a route names may include this process.
                for channel in self._channels():
                    await channel.start()
                    started.append(channel)
            except BaseException:
                for begun in reversed(started):
                    await begun.close(0)
                self._state = _CLOSED
                raise
            routes = {pattern: self._transports[url] for pattern, url in self.config.routes.items()}
            self._router = Router(self._transports[self.config.url], routes)
            self._state = _OPEN
            return self

    def _channels(self) -> list[Transport | Listener]:
        """The listener first: the peers a route names may include this process."""
        listener: list[Transport | Listener] = [] if self._listener is None else [self._listener]
        return [*listener, *self._transports.values()]

    def _make_listener(self, url: str) -> Listener:
        scheme, factory = self._factory(url)
        if not isinstance(factory, ListeningFactory):
            raise NotSupported(f"{scheme}:// channels cannot listen; use a tcp:// listen address")
        return factory.listener(url, self._options_for(scheme, factory))

    @property
    def closed(self) -> bool:
        """True once ``close()`` has begun."""
        return self._state >= _CLOSING

    async def close(self, timeout: float | None = None) -> None:
        """Stop new deliveries, let handlers settle, flush publishes, disconnect.

        Waits up to ``timeout`` (default ``drain_timeout``) for publishes in flight and for
        delivered messages to be settled; unsettled group messages go back to their group.
        Idempotent: a second call waits for the first to finish.
        """
        if self._state >= _CLOSING:
            if self._closed_event is not None:
                await self._closed_event.wait()
            return
        was_open = self._state == _OPEN
        self._state = _CLOSING
        self._closed_event = asyncio.Event()
        budget = self.drain_timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget
        try:
            if was_open:
                # Publishes in flight finish first: nothing confirmed is lost by closing.
                if self._pending:
                    self._idle = loop.create_future()
                    try:
                        async with asyncio.timeout(budget):
                            await self._idle
                    except TimeoutError:
                        pass
                await self._drain_deliveries(deadline)
            for channel in self._channels():
                await channel.close(max(0.0, deadline - loop.time()))
        finally:
            self._state = _CLOSED
            self._closed_event.set()

    async def drain(self, timeout: float | None = None) -> None:
        """Stop taking messages, but stay open for publishing: direct peers are told to send
        nothing new and what this process accepted from them is handed out; then every
        subscription and handler drains (up to ``timeout`` in all, default
        ``drain_timeout``), as ``close()`` would. ``close()`` still follows."""
        self._check_open()
        loop = asyncio.get_running_loop()
        budget = self.drain_timeout if timeout is None else timeout
        await self._drain_deliveries(loop.time() + budget)

    async def _drain_deliveries(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        if self._listener is not None:
            # Direct peers stop sending; what was accepted is handed out first.
            await self._listener.quiesce(max(0.0, deadline - loop.time()))
        subs = list(self._subscriptions)
        await asyncio.gather(
            *(s.close(max(0.0, deadline - loop.time())) for s in subs),
            return_exceptions=True,
        )

    # -- helpers ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._state != _OPEN:
            if self._state == _NEW:
                raise NotStarted(
                    "start the bus first: 'async with meshbus.connect(...)' or 'await bus'"
                )
            raise Closed("this bus is closed (or closing) and takes no new work")

    def _transport_for(self, subject: str) -> Transport:
        transport = self._route_cache.get(subject)
        if transport is None:
            validate_subject(subject)
            assert self._router is not None
            transport = self._router.for_subject(subject)
            self._route_cache.put(subject, transport)
        return transport

    def _envelope(
        self,
        transport: Transport,
        subject: str,
        payload: object,
        key: str | None,
        headers: Mapping[str, str] | None,
    ) -> Envelope:
        if type(payload) is bytes:
            data, content_type = payload, None
        else:
            data, content_type = codec.encode(payload)
        limit = transport.capabilities.max_payload
        if len(data) > limit:
            raise PayloadTooLarge(len(data), limit, subject)
        checked = check_user_headers(headers) if headers else {}
        if content_type is not None:
            checked[CONTENT_TYPE] = content_type
        if key is not None and type(key) is not str:
            raise TypeError(f"key must be a str, not {type(key).__name__}")
        return Envelope(subject, data, checked, key, f"{self._id_prefix}{next(self._ids):x}")

    def _end(self) -> None:
        self._pending -= 1
        if not self._pending and self._idle is not None:
            self._end_idle()

    def _end_idle(self) -> None:
        if self._idle is not None and not self._idle.done():
            self._idle.set_result(None)

    # -- the API ---------------------------------------------------------------------------

    def health(self) -> list[ChannelHealth]:
        """How each channel and the listen address are (see ``meshbus.health``): what the
        channel reports where it can (``ReportsHealth``), else ``connected`` while the bus is
        open."""
        report: list[ChannelHealth] = []
        channels: list[tuple[str, Literal["channel", "listener"], object]] = [
            (url, "channel", transport) for url, transport in self._transports.items()
        ]
        if self._listener is not None and self.config.listen is not None:
            channels.insert(0, (self.config.listen, "listener", self._listener))
        for url, role, channel in channels:
            state: ChannelState
            if self._state == _NEW:
                state = "connecting"
            elif self._state != _OPEN:
                state = "closed"
            elif isinstance(channel, ReportsHealth):
                state = channel.health()
            else:
                state = "connected"
            report.append(ChannelHealth(redact(url), role, state))
        return report

    def capabilities(self, subject: str) -> Capabilities:
        """The capabilities of the channel that ``subject`` is routed to."""
        self._check_open()
        return self._transport_for(subject).capabilities

    async def publish(
        self,
        subject: str,
        payload: object,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> str:
        """Publish ``payload`` to ``subject``; return its message id once the channel has taken
        responsibility for it (contract point 5)."""
        if self._state != _OPEN:
            self._check_open()
        # The per-message path: the route cache inlined.
        transport = self._route_cache.get(subject)
        if transport is None:
            transport = self._transport_for(subject)
        envelope = self._envelope(transport, subject, payload, key, headers)
        self._pending += 1
        try:
            await transport.publish(envelope, self.publish_timeout if timeout is None else timeout)
        finally:
            self._end()
        return envelope.id

    async def publish_many(
        self,
        messages: Iterable[Outgoing | tuple[str, object]],
        *,
        timeout: float | None = None,
    ) -> list[str]:
        """Publish several messages with pipelined confirms; return their ids once every one is
        taken. Every message is checked and encoded before any is sent."""
        self._check_open()
        batches: dict[int, tuple[Transport, list[Envelope]]] = {}
        ids: list[str] = []
        last: Transport | None = None
        envelopes: list[Envelope] = []
        for item in messages:
            if isinstance(item, Outgoing):
                subject, payload, key, headers = item.subject, item.payload, item.key, item.headers
            else:
                subject, payload = item
                key, headers = None, None
            transport = self._transport_for(subject)
            envelope = self._envelope(transport, subject, payload, key, headers)
            if transport is not last:  # runs of one channel skip the lookup
                batch = batches.get(id(transport))
                if batch is None:
                    batch = batches[id(transport)] = (transport, [])
                last, envelopes = transport, batch[1]
            envelopes.append(envelope)
            ids.append(envelope.id)
        wait = self.publish_timeout if timeout is None else timeout
        self._pending += 1
        try:
            await asyncio.gather(*(t.publish_many(envs, wait) for t, envs in batches.values()))
        finally:
            self._end()
        return ids

    def subscribe(
        self,
        subject: str,
        group: str | None = None,
        *,
        prefetch: int = DEFAULT_PREFETCH,
        max_deliver: int | None = None,
    ) -> Subscription:
        """Subscribe to a subject or pattern; with ``group``, share its messages with the other
        members of that group (contract points 2 and 3). A message delivered more than
        ``max_deliver`` times is dead-lettered instead of handed over (contract point 12),
        whoever left it unsettled before.

        Use as ``async with bus.subscribe(...) as sub: async for msg in sub: ...`` or
        ``sub = await bus.subscribe(...)``; the subscription is active once entered.
        """
        validate_pattern(subject)
        if group is not None:
            validate_group(group)
        if prefetch < 1:
            raise ValueError(f"prefetch must be at least 1, got {prefetch}")
        _check_max_deliver(max_deliver)
        return Subscription(
            self, subject, group, prefetch, link=self._link, max_deliver=max_deliver
        )

    def _targets(self, pattern: str) -> list[Subscribable]:
        self._check_open()
        assert self._router is not None
        targets: list[Subscribable] = [
            t
            for t in self._router.for_pattern(pattern)
            if not t.capabilities.subscribe_via_listener
        ]
        if self._listener is not None:
            targets.append(self._listener)
        if not targets:
            raise ConfigurationError(
                f"subscriptions to {pattern!r} arrive over a direct channel, which delivers to "
                "the subscriber's listen address: give this bus one (listen='tcp://0.0.0.0:7000' "
                "or MESHBUS_LISTEN)"
            )
        return targets

    def serve(
        self,
        subject: str,
        handler: Handler,
        *,
        group: str | None = None,
        concurrency: int = 1,
        prefetch: int = DEFAULT_PREFETCH,
        on_error: OnError = "reject",
        max_deliver: int | None = None,
    ) -> Service:
        """Run ``handler(message)`` for each message on a subject or pattern; with ``group``,
        share them with the group's other members, as ``subscribe`` does.

        What the handler returns answers a request (``None`` is sent as JSON ``null``); any
        other message is acked once the handler returns. A handler that raises has its message
        rejected to the dead-letter subject (``on_error="nack"``: delivered again; a function
        ``on_error(message, error)`` settles it itself) and the error logged; one that settles
        or responds itself is left to it. A message delivered more than ``max_deliver`` times
        (contract point 12) is dead-lettered without reaching the handler. At most
        ``concurrency`` handlers run at once. Use as ``async with bus.serve(...)`` or
        ``service = await bus.serve(...)``::

            async def quote(msg: meshbus.Message) -> dict[str, float]:
                return {"price": prices[msg.json()["sku"]]}

            async with bus.serve("pricing.quote", quote, group="pricing"):
                await stop.wait()
        """
        subscription = self.subscribe(subject, group, prefetch=prefetch)  # checks those three
        if not callable(handler):
            raise TypeError(f"handler must be callable, not {type(handler).__name__}")
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        if not callable(on_error) and on_error not in ("reject", "nack"):
            raise ValueError(f"on_error must be 'reject', 'nack' or a function, got {on_error!r}")
        _check_max_deliver(max_deliver)
        return Service(
            subscription, handler, concurrency, on_error, link=self._link, max_deliver=max_deliver
        )

    async def declare_group(self, subject: str, group: str) -> None:
        """Create ``group`` on ``subject`` so that it keeps messages before any member joins
        (durable channels only)."""
        validate_pattern(subject)
        validate_group(group)
        for target in self._targets(subject):
            transport = cast(Transport, target)  # a listener is not durable: refused below
            if not transport.capabilities.durable:
                raise NotSupported(
                    f"the channel for {subject!r} is not durable; groups exist only while a "
                    "member is subscribed"
                )
            await transport.declare_group(subject, group)

    async def request(
        self,
        subject: str,
        payload: object,
        *,
        timeout: float = DEFAULT_REQUEST_TIMEOUT,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Message:
        """Send a request and return the reply (contract point 6). Raises ``RequestTimeout``
        when no reply comes in time, ``NoResponders`` where the channel can tell at once."""
        if self._state != _OPEN:
            self._check_open()
        if timeout <= 0:
            raise ValueError(f"request timeout must be > 0, got {timeout}")
        transport = self._route_cache.get(subject)
        if transport is None:
            transport = self._transport_for(subject)
        if type(payload) is bytes and key is None and not headers:
            # The usual request (bytes, no key, no headers) skips _envelope's checks.
            if len(payload) > transport.capabilities.max_payload:
                raise PayloadTooLarge(len(payload), transport.capabilities.max_payload, subject)
            envelope = Envelope(subject, payload, {}, None, f"{self._id_prefix}{next(self._ids):x}")
        else:
            envelope = self._envelope(transport, subject, payload, key, headers)
        self._pending += 1
        try:
            return await transport.request(envelope, timeout)
        finally:
            self._pending -= 1
            if not self._pending and self._idle is not None:
                self._end_idle()


def _check_max_deliver(max_deliver: int | None) -> None:
    if max_deliver is not None and (type(max_deliver) is not int or max_deliver < 1):
        raise ValueError(f"max_deliver must be a whole number >= 1, got {max_deliver!r}")


class _BusLink:
    """The bus as its subscriptions and services see it (``meshbus._link.Link``)."""

    __slots__ = ("_bus",)

    def __init__(self, bus: Bus) -> None:
        self._bus = bus

    @property
    def drain_timeout(self) -> float:
        return self._bus.drain_timeout

    def targets(self, pattern: str) -> list[Subscribable]:
        return self._bus._targets(pattern)

    def opened(self, resource: Closeable) -> None:
        self._bus._subscriptions.add(resource)

    def closed(self, resource: Closeable) -> None:
        self._bus._subscriptions.discard(resource)
