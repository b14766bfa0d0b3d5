"""``memory://name`` — the in-process channel.

Every bus connected to the same ``memory://name`` in one process shares one in-process broker
(a :class:`meshbus.channels.delivery.Hub`), which lives while at least one of those buses is
open. It keeps the whole contract, so it is both the channel for single-process apps and the
test double for code written against meshbus:

- broadcast subscribers each get every message published after they subscribed; a subscriber
  holds at most ``buffer`` undelivered messages (URL option, default 10000) and a publisher
  waits for room (up to its timeout) rather than dropping or growing memory; settling a
  broadcast message only marks it done, and closing does not wait for it;
- groups are durable for the broker's lifetime: they exist from their first subscription or
  ``declare_group``, keep messages while no member is subscribed, and redeliver anything a
  member nacks or leaves unsettled, counting ``attempt``;
- a group is one FIFO queue, so messages with one key keep their publish order;
- ``request()`` raises ``NoResponders`` at once when nothing subscribes to the subject.

URL options: ``memory://app?max_payload=8388608&buffer=10000``.
"""

from __future__ import annotations

import asyncio
import itertools
import weakref
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from meshbus.channels.delivery import BroadcastSubscriber, Hub, Member
from meshbus.errors import Closed, InvalidURL, NoResponders, RequestTimeout
from meshbus.headers import CORRELATION_ID, REPLY_TO
from meshbus.kit import channel_settings, move_typed, reject_unknown
from meshbus.message import Message
from meshbus.transport import Capabilities, Envelope

__all__ = ["MemoryTransport"]

DEFAULT_MAX_PAYLOAD = 8 * 1024 * 1024
DEFAULT_BUFFER = 10_000

_hubs: weakref.WeakValueDictionary[str, Hub] = weakref.WeakValueDictionary()
_request_ids = itertools.count(1)


class MemoryTransport:
    """The ``memory://`` channel (see the module docstring)."""

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        parts, settings = channel_settings(url, options)
        name = (parts.netloc + parts.path).strip("/")
        if not name:
            raise InvalidURL(url, "memory:// needs a name, e.g. memory://app")
        values: dict[str, Any] = {"max_payload": DEFAULT_MAX_PAYLOAD, "buffer": DEFAULT_BUFFER}
        try:
            move_typed(settings, values, ints=("max_payload", "buffer"))
        except (TypeError, ValueError) as exc:
            raise InvalidURL(url, f"max_payload and buffer are whole numbers: {exc}") from exc
        reject_unknown(url, "memory", settings)
        max_payload, self.buffer = values["max_payload"], values["buffer"]
        if max_payload < 1 or self.buffer < 1:
            raise InvalidURL(url, "max_payload and buffer must be at least 1")
        self.name = name
        self.capabilities = Capabilities(
            max_payload=max_payload, durable=True, ordered_by_key=True, no_responders=True
        )
        self._hub: Hub | None = None
        self._subs: set[Member | BroadcastSubscriber] = set()
        self._closed = False

    @property
    def hub(self) -> Hub:
        if self._hub is None or self._closed:
            raise Closed(f"memory://{self.name} is not connected")
        return self._hub

    async def start(self) -> None:
        hub = _hubs.get(self.name)
        if hub is None:
            hub = _hubs[self.name] = Hub(self.name)
        self._hub = hub

    async def publish(self, envelope: Envelope, timeout: float | None) -> None:
        await self.hub.publish(envelope, timeout)

    async def publish_many(self, envelopes: Sequence[Envelope], timeout: float | None) -> None:
        hub = self.hub
        for envelope in envelopes:
            await hub.publish(envelope, timeout)

    async def subscribe(
        self, pattern: str, group: str | None, prefetch: int
    ) -> Member | BroadcastSubscriber:
        sub = self.hub.subscriber(
            pattern,
            group,
            max_payload=self.capabilities.max_payload,
            prefetch=prefetch,
            buffer=self.buffer,
        )
        self._subs.add(sub)
        return sub

    async def declare_group(self, pattern: str, group: str) -> None:
        self.hub.group(pattern, group)

    async def request(self, envelope: Envelope, timeout: float) -> Message:
        hub = self.hub
        if not hub.has_responders(envelope.subject):
            raise NoResponders(envelope.subject)
        inbox = f"_INBOX.{id(hub):x}.{next(_request_ids)}"
        envelope.headers[REPLY_TO] = inbox
        envelope.headers[CORRELATION_ID] = envelope.id
        future: asyncio.Future[Envelope] = asyncio.get_running_loop().create_future()
        hub.expect_reply(inbox, future)
        try:
            async with asyncio.timeout(timeout):
                await hub.publish(envelope, timeout)
                reply = await future
        except TimeoutError:
            raise RequestTimeout(envelope.subject, timeout) from None
        finally:
            hub.forget_reply(inbox)
        return Message(reply.subject, reply.data, reply.headers, id=reply.id)

    def health(self) -> Literal["connecting", "connected", "reconnecting", "closed"]:
        """Connected from ``start()`` to ``close()`` (``ReportsHealth``)."""
        if self._closed:
            return "closed"
        return "connecting" if self._hub is None else "connected"

    async def close(self, timeout: float) -> None:
        if self._closed:
            return
        subs = list(self._subs)
        self._subs.clear()
        await asyncio.gather(*(sub.close(timeout) for sub in subs))
        self._closed = True
        self._hub = None
