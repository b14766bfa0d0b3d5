"""``tcp://host:port[,host:port...]`` — publish straight to the peers that serve subscriptions.

For each message the dialler picks, from its connected peers' interests, every peer with a
matching broadcast interest and one peer per group (by key where the message has one, so a
key's messages stay in order; round robin otherwise). It returns once every chosen peer has
ACCEPTed (queued the message for a subscriber). A peer that refuses loses its share of groups
to another member. A peer that is disconnected keeps its last known interests: copies owed to
it (a broadcast copy, or a group copy no connected member can take) wait for it to come back,
up to the publish timeout, and then the publish raises ``PublishTimeout`` — a message is never
dropped unseen for a subscriber that may still be there. Subscriptions are served by the bus's
listen address.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
from collections.abc import Mapping, Sequence
from typing import Any

from meshbus.channels.direct.config import DirectConfig
from meshbus.channels.direct.frames import Hello, Reply
from meshbus.channels.direct.listener import DirectListener
from meshbus.channels.direct.peer import ACCEPTED, LOST, REFUSED, Peer
from meshbus.errors import (
    ConnectFailed,
    ConnectionLost,
    NoResponders,
    NotSupported,
    PublishTimeout,
    RequestTimeout,
)
from meshbus.headers import CORRELATION_ID
from meshbus.message import Message
from meshbus.transport import Capabilities, Envelope, TransportSubscription

__all__ = ["TcpTransport"]

GroupKey = tuple[str, str]
Plan = dict[Peer, list[tuple[int, GroupKey | None]]]
Sent = list[tuple[Peer, list[tuple[int, GroupKey | None]], "asyncio.Future[int] | None"]]


class TcpTransport:
    """The ``tcp://`` channel (see the module docstring)."""

    listener = DirectListener
    """What serves ``listen=tcp://...``."""
    extra_options: tuple[str, ...] = ()
    """URL options a subclass adds (they land in ``config.extra``)."""

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        self.config = DirectConfig.from_url(url, options, extra=self.extra_options)
        self.capabilities = Capabilities(
            max_payload=self.config.max_payload,
            ordered_by_key=True,
            no_responders=True,
            reconnects=True,
            subscribe_via_listener=True,
        )
        self._hello = Hello(
            node=f"{os.uname().nodename}-{os.getpid()}-{id(self):x}",
            max_frame=self.config.settings.max_frame,
            credit=0,
            token=self.config.settings.token,
        )
        self.peers: list[Peer] = []
        self._membership = asyncio.Event()
        self._round_robin = itertools.count()

    def _add_peer(self, host: str, port: int) -> Peer:
        """Start dialling one more peer."""
        peer = Peer(host, port, self.config, self._hello, self._peer_state)
        self.peers.append(peer)
        peer.start()
        self._membership_changed()
        return peer

    async def _drop_peer(self, peer: Peer, drain: float) -> None:
        """Send it nothing new, give what it has in flight up to ``drain`` seconds to be
        accepted, then close."""
        if peer in self.peers:
            self.peers.remove(peer)
            self._membership_changed()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(drain):
                await peer.wait_idle()
        await peer.stop()

    def _membership_changed(self) -> None:
        self._membership.set()
        self._membership = asyncio.Event()

    def _peer_state(self, peer: Peer, up: bool) -> None:
        """Hook for subclasses: a connection to ``peer`` came up or failed."""

    async def start(self) -> None:
        for host, port in self.config.addresses:
            self._add_peer(host, port)
        await self._first_connection()

    async def _first_connection(self) -> None:
        try:
            await self._wait_connected(self.config.connect_timeout)
        except TimeoutError:
            errors = "; ".join(f"{p.host}:{p.port}: {p.last_error}" for p in self.peers)
            await self.close(0)
            raise ConnectFailed(
                f"no {self.config.scheme}:// peer answered within "
                f"{self.config.connect_timeout:g} s ({errors})"
            ) from None

    async def _wait_connected(self, timeout: float | None) -> None:
        async with asyncio.timeout(timeout):
            while not any(peer.ready.is_set() for peer in self.peers):
                waits = [asyncio.ensure_future(peer.ready.wait()) for peer in self.peers]
                waits.append(asyncio.ensure_future(self._membership.wait()))
                try:
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for wait in waits:
                        wait.cancel()

    # -- planning --------------------------------------------------------------------------

    def _plan(self, envelope: Envelope, exclude: set[tuple[Peer, GroupKey]] | None = None) -> Plan:
        plan: Plan = {}
        groups: dict[GroupKey, list[tuple[Peer, int]]] = {}
        for peer in self.peers:
            # A disconnected peer counts with its last known interests: its copies wait for it.
            for interest in peer.index.lookup(envelope.subject):
                if interest.group is None:
                    plan.setdefault(peer, []).append((interest.id, None))
                else:
                    key = (interest.pattern, interest.group)
                    if exclude is None or (peer, key) not in exclude:
                        groups.setdefault(key, []).append((peer, interest.id))
        for key, candidates in groups.items():
            if exclude is not None and all((p, key) in exclude for p, _ in candidates):
                continue
            connected = [c for c in candidates if c[0].ready.is_set()]
            candidates = connected or candidates
            if envelope.key is not None:
                peer, interest_id = candidates[hash(envelope.key) % len(candidates)]
            else:
                peer, interest_id = candidates[next(self._round_robin) % len(candidates)]
            plan.setdefault(peer, []).append((interest_id, key))
        return plan

    async def _send(self, envelope: Envelope, plan: Plan) -> Sent:
        sent: Sent = []
        for peer, entries in plan.items():
            try:
                fate, _ = await peer.send(envelope, tuple(i for i, _ in entries))
            except ConnectionLost:
                sent.append((peer, entries, None))
                continue
            sent.append((peer, entries, fate))
        return sent

    async def _confirm(self, envelope: Envelope, sent: Sent) -> None:
        """Wait for every copy's fate. A refused group copy goes to another member; a copy
        lost with its connection stays owed until its peer is back (or nobody wants it any
        more); the caller's timeout bounds the wait."""
        refused: set[tuple[Peer, GroupKey]] = set()
        lost: set[Peer] = set()
        while True:
            owed_peers: set[Peer] = set()
            owed_groups: set[GroupKey] = set()
            for peer, entries, fate in sent:
                outcome = LOST if fate is None else await fate
                if outcome == ACCEPTED:
                    continue
                if outcome == LOST:
                    lost.add(peer)
                for _, key in entries:
                    if key is not None:
                        owed_groups.add(key)
                        if outcome == REFUSED:
                            refused.add((peer, key))
                    elif outcome == LOST:
                        owed_peers.add(peer)
            while True:
                if not owed_peers and not owed_groups:
                    return
                plan = self._plan(envelope, refused)
                plan = {
                    peer: kept
                    for peer, entries in plan.items()
                    if peer.ready.is_set()  # owed to a disconnected peer: wait for it below
                    and (
                        kept := [
                            (i, key)
                            for i, key in entries
                            if (key is None and peer in owed_peers) or key in owed_groups
                        ]
                    )
                }
                if plan:
                    break
                if all(peer.ready.is_set() or peer not in self.peers for peer in lost):
                    return  # every peer is back (or gone for good) and none wants it
                await self._changed()
            sent = await self._send(envelope, plan)

    async def _changed(self) -> None:
        """Wait until some peer connects, disconnects or changes its interests."""
        events = [peer.changed for peer in self.peers] + [self._membership]
        waits = [asyncio.ensure_future(event.wait()) for event in events]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    # -- the Transport protocol ------------------------------------------------------------

    async def publish(self, envelope: Envelope, timeout: float | None) -> None:
        try:
            async with asyncio.timeout(timeout):
                if not any(peer.ready.is_set() for peer in self.peers):
                    await self._wait_connected(None)
                await self._confirm(envelope, await self._send(envelope, self._plan(envelope)))
        except TimeoutError:
            raise PublishTimeout(
                f"no {self.config.scheme}:// peer took the message within {timeout:g} s"
            ) from None

    async def publish_many(self, envelopes: Sequence[Envelope], timeout: float | None) -> None:
        try:
            async with asyncio.timeout(timeout):
                if not any(peer.ready.is_set() for peer in self.peers):
                    await self._wait_connected(None)
                batch = [(env, await self._send(env, self._plan(env))) for env in envelopes]
                for envelope, sent in batch:
                    await self._confirm(envelope, sent)
        except TimeoutError:
            raise PublishTimeout(
                f"the {self.config.scheme}:// peers did not take the batch within {timeout:g} s"
            ) from None

    async def request(self, envelope: Envelope, timeout: float) -> Message:
        envelope.headers[CORRELATION_ID] = envelope.id
        waiting: list[tuple[Peer, asyncio.Future[Reply]]] = []
        try:
            async with asyncio.timeout(timeout):
                if not any(peer.ready.is_set() for peer in self.peers):
                    await self._wait_connected(None)
                plan = self._plan(envelope)
                if not plan:
                    raise NoResponders(envelope.subject)
                for peer, entries in plan.items():
                    _, reply = await peer.send(envelope, tuple(i for i, _ in entries), True)
                    assert reply is not None
                    waiting.append((peer, reply))
                pending = {reply for _, reply in waiting}
                while pending:
                    done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                    for future in done:
                        if future.exception() is None:
                            answer = future.result()
                            return Message(
                                envelope.subject, answer.data, answer.headers, id=envelope.id
                            )
                raise ConnectionLost("every peer the request went to was lost before replying")
        except TimeoutError:
            raise RequestTimeout(envelope.subject, timeout) from None
        finally:
            for peer, reply in waiting:
                peer.forget_reply(reply)
                if reply.done() and not reply.cancelled():
                    reply.exception()  # retrieved: no "never retrieved" noise

    async def subscribe(
        self, pattern: str, group: str | None, prefetch: int
    ) -> TransportSubscription:
        raise NotSupported(
            f"subscriptions on {self.config.scheme}:// are served by the bus's listen address"
        )

    async def declare_group(self, pattern: str, group: str) -> None:
        raise NotSupported("direct channels are not durable: a group exists while a member does")

    async def close(self, timeout: float) -> None:
        await asyncio.gather(*(peer.stop() for peer in self.peers))
