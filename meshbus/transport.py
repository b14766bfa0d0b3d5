"""The channel contract: what a transport must do so that a bus can use it.

The contract's numbered points, the capabilities and what each conformance test checks are
written out in ``docs/contract.md``; this module declares the same as types.

A channel is any object that satisfies :class:`Transport`; no base class is needed. It is found
by URL scheme through the entry-point group ``meshbus.transports``: the entry point names a
callable ``factory(url, options) -> Transport``. The bus does the channel-independent work
before calling it (subject and header checks, encoding, the payload limit from
``capabilities.max_payload``, message ids); a transport moves bytes and keeps the delivery
guarantees it declares in :class:`Capabilities`.

Every method is called from the event loop that started the transport; none is thread-safe.

Two parts are optional, and found by type: a channel whose subscriptions are served at a listen
address offers a :class:`Listener` (its factory is a :class:`ListeningFactory`), and a
subscription that can push messages to ``Bus.serve`` is a :class:`PushSubscription`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from meshbus.message import Message

__all__ = [
    "Answering",
    "Capabilities",
    "Envelope",
    "Listener",
    "ListeningFactory",
    "PushSubscription",
    "ReportsHealth",
    "Settler",
    "Transport",
    "TransportFactory",
    "TransportSubscription",
    "Wakeable",
]


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a channel guarantees beyond the part of the contract every channel keeps.

    The conformance suite runs each capability's tests wherever it is declared, so a declared
    capability is always tested.
    """

    max_payload: int
    """Largest payload in bytes; a larger one raises ``PayloadTooLarge`` before sending."""
    durable: bool = False
    """Groups exist from their first subscription or ``declare_group``, keep messages while no
    member is connected, and deliver at least once (unsettled messages come again)."""
    ordered_by_key: bool = False
    """Messages with the same key from one publisher reach a group in publish order."""
    no_responders: bool = False
    """``request()`` raises ``NoResponders`` at once when nobody subscribes."""
    replay: bool = False
    """Past messages can be read again from the channel's log. Planned: no channel declares
    it yet, and no conformance test reads it (``docs/contract.md#planned``)."""
    reconnects: bool = False
    """The channel holds connections that it re-establishes after a loss (contract point 11)."""
    subscribe_via_listener: bool = False
    """Subscriptions on this channel are served by the bus's listen address, not by the
    channel itself (the direct channels: peers publish straight to the subscriber)."""


class Envelope:
    """An outgoing message as the bus hands it to a transport: already checked and encoded."""

    __slots__ = ("data", "headers", "id", "key", "subject")

    def __init__(
        self, subject: str, data: bytes, headers: dict[str, str], key: str | None, id: str
    ) -> None:
        self.subject = subject
        self.data = data
        self.headers = headers
        self.key = key
        self.id = id

    def __repr__(self) -> str:
        return f"Envelope(subject={self.subject!r}, id={self.id!r}, size={len(self.data)})"


@runtime_checkable
class Settler(Protocol):
    """Settles the messages a transport delivered; each ``Message`` points at one.

    ``Message`` guarantees each message is settled at most once before calling in here.
    """

    max_payload: int
    """Largest reply payload ``respond`` accepts."""

    async def ack(self, message: Message) -> None:
        """The message is done with; it will not come again."""

    async def nack(self, message: Message, delay: float | None) -> None:
        """Deliver the message again (to this group), after ``delay`` seconds where given."""

    async def reject(self, message: Message, reason: str) -> None:
        """Move the message to its group's dead-letter subject with the reason in headers."""

    async def respond(self, message: Message, reply: Envelope) -> None:
        """Send ``reply`` to the requester of ``message``."""

    async def progress(self, message: Message) -> None:
        """Tell the channel the handler is still working, so it does not redeliver yet."""


@runtime_checkable
class Answering(Protocol):
    """A settler that can answer a request at once: ``Message.respond(data)`` with bytes and
    no headers, on a message not yet settled, calls ``answer`` instead of ``respond`` and
    ``ack`` (no coroutine for either)."""

    def answer(self, message: Message, data: bytes, /) -> bool:
        """Send ``data`` as the reply and settle ``message`` as acked, now; return False, with
        nothing done, when it cannot (``data`` over the largest payload): ``respond`` then
        takes the long way, which says why."""


class Wakeable(Protocol):
    """What waits for a message to be ready: an ``asyncio.Future`` a task awaits, or a
    callback object (push delivery, see :class:`PushSubscription`)."""

    def done(self) -> bool:
        """True once woken (or given up)."""

    def set_result(self, result: None, /) -> None:
        """Wake it; ``asyncio.InvalidStateError`` if it is done."""


@runtime_checkable
class TransportSubscription(Protocol):
    """The stream of messages of one subscription on one channel.

    Iteration ends (``StopAsyncIteration``) once the subscription is closed.
    """

    def __aiter__(self) -> AsyncIterator[Message]:
        """Return ``self``."""

    async def __anext__(self) -> Message:
        """The next message; waits for one."""

    async def close(self, timeout: float) -> None:
        """Stop new deliveries, wait up to ``timeout`` seconds for delivered messages to be
        settled, then give the unsettled ones back to the group. Idempotent."""


@runtime_checkable
class PushSubscription(TransportSubscription, Protocol):
    """A subscription that can push messages, which ``Bus.serve`` uses when it is the only
    one of its pattern: a handler then starts from whatever queued its message."""

    def poll(self, waker: Wakeable, /) -> Message | None:
        """The next message if one can be taken now; otherwise None, and
        ``waker.set_result(None)`` is called once (from whatever queues the next message) when
        one may be taken, after which ``poll`` is called again. A waker whose ``done()`` is
        true is skipped; nothing is taken once closing; what is returned counts against
        ``prefetch`` as iteration does."""

    def answer(self, message: Message, data: bytes, /) -> bool:
        """As :meth:`Answering.answer`, for a message this subscription delivered."""


@runtime_checkable
class Transport(Protocol):
    """A channel: the bytes-moving half of a bus."""

    capabilities: Capabilities

    async def start(self) -> None:
        """Connect. A first connection that fails raises ``ConnectFailed`` at once."""

    async def publish(self, envelope: Envelope, timeout: float | None) -> None:
        """Return once the channel has taken responsibility for the message (contract point
        5); raise, and have sent nothing that will be delivered, otherwise."""

    async def publish_many(self, envelopes: Sequence[Envelope], timeout: float | None) -> None:
        """Publish several messages with pipelined confirms; same guarantee for every one, and
        messages with the same key keep their order."""

    async def subscribe(
        self, pattern: str, group: str | None, prefetch: int
    ) -> TransportSubscription:
        """Start a subscription; when this returns it is active (contract point 2).
        ``prefetch`` bounds the messages delivered and not yet settled."""

    async def declare_group(self, pattern: str, group: str) -> None:
        """Create ``group`` on ``pattern`` so that it keeps messages before any member joins
        (``NotSupported`` on channels that are not durable)."""

    async def request(self, envelope: Envelope, timeout: float) -> Message:
        """Publish a request and return the first reply; raise ``RequestTimeout`` or, where the
        channel can tell, ``NoResponders``."""

    async def close(self, timeout: float) -> None:
        """Drain its subscriptions (up to ``timeout``), flush publishes, disconnect.
        Idempotent."""


@runtime_checkable
class ReportsHealth(Protocol):
    """A channel (or listener) that can say how its connections are: ``Bus.health()`` asks
    it. One that cannot is reported ``connected`` while the bus is open."""

    def health(self) -> Literal["connecting", "connected", "reconnecting", "closed"]:
        """``connecting`` before a first connection, ``connected``, ``reconnecting`` after a
        loss (contract point 11), or ``closed``."""


@runtime_checkable
class Listener(Protocol):
    """What serves this process's subscriptions at a listen address (``listen=tcp://...``):
    peers publish to it directly. It does not publish."""

    capabilities: Capabilities

    async def start(self) -> None:
        """Listen. An address that cannot be listened on raises ``ConnectFailed``."""

    async def subscribe(
        self, pattern: str, group: str | None, prefetch: int
    ) -> TransportSubscription:
        """Serve a subscription; when this returns, every connected peer knows of it."""

    async def quiesce(self, timeout: float) -> None:
        """The first step of a bus's close: peers are told to send nothing new, and local
        subscribers get up to ``timeout`` seconds to take what was already accepted."""

    async def close(self, timeout: float) -> None:
        """Stop listening and close every connection. Idempotent."""


TransportFactory = Callable[[str, Mapping[str, Any]], Transport]
"""What an entry point in ``meshbus.transports`` names: ``factory(url, options)``."""


@runtime_checkable
class ListeningFactory(Protocol):
    """A channel factory that can also serve a listen address."""

    def __call__(self, url: str, options: Mapping[str, Any], /) -> Transport:
        """The channel for ``url`` (a :data:`TransportFactory`)."""

    def listener(self, url: str, options: Mapping[str, Any], /) -> Listener:
        """What serves the listen address ``url``."""
