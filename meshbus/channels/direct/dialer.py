"""``tcp://host:port[,host:port...]`` — publish straight to the peers that serve subscriptions.

For each message the dialler picks, from its connected peers' interests, every peer with a
matching broadcast interest and one peer per group (by key where the message has one, so a
key's messages stay in order; round robin otherwise), from a plan cached per subject. Each
peer's share of a ``publish_many`` goes out as few PUB frames, and it returns once every chosen
peer has ACCEPTed (queued the message for a subscriber). A peer that refuses loses its share
of groups to another member. A peer that is disconnected keeps its last known interests: copies
owed to it (a broadcast copy, or a group copy no connected member can take) wait for it to come
back, up to the publish timeout, and then the publish raises ``PublishTimeout`` — a message is
never dropped unseen for a subscriber that may still be there. Subscriptions are served by the
bus's listen address.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from meshbus import _clock
from meshbus._clock import Alarm
from meshbus.channels.direct.config import DirectConfig
from meshbus.channels.direct.frames import Hello, Reply
from meshbus.channels.direct.listener import DirectListener
from meshbus.channels.direct.peer import ACCEPTED, LOST, REFUSED, Batch, Item, Peer, Refused
from meshbus.errors import (
    ConnectFailed,
    ConnectionLost,
    NoResponders,
    NotSupported,
    PublishTimeout,
    RequestTimeout,
)
from meshbus.kit import BoundedCache
from meshbus.message import NO_SETTLER, Message
from meshbus.transport import Capabilities, Envelope, TransportSubscription

__all__ = ["TcpTransport"]

GroupKey = tuple[str, str]
Entries = list[tuple[int, GroupKey | None]]
Candidates = list[tuple["Peer", int]]
"""The members of one group a message may go to: each peer and its interest id there."""
Plan = dict[Peer, Entries]
Copies = list[tuple[Peer, tuple[int, ...], Entries]]
"""The copies of one message: each peer, the interests it is for there, and why."""
Outcomes = list[tuple[Peer, Entries, int]]
"""What became of copies of one message: ACCEPTED, REFUSED or LOST."""


class _Route:
    """Where a subject's messages go, worked out once per subject and kept until a peer
    connects, leaves or changes its interests: every peer's broadcast interests, and each
    group's members (``everyone``) and the ones to choose from (``choices``: the connected
    members, or all if none is). ``fixed`` holds the copies outright when no group leaves a
    choice to make."""

    __slots__ = ("broadcast", "everyone", "fixed", "groups")

    def __init__(self, broadcast: Plan, everyone: list[tuple[GroupKey, Candidates]]) -> None:
        self.broadcast = broadcast
        self.everyone = everyone
        self.groups = [(key, _connected(candidates)) for key, candidates in everyone]
        self.fixed: Copies | None = None
        if all(len(candidates) == 1 for _, candidates in self.groups):
            plan: Plan = {peer: list(entries) for peer, entries in broadcast.items()}
            for key, [(peer, interest_id)] in self.groups:
                plan.setdefault(peer, []).append((interest_id, key))
            self.fixed = _copies(plan)


def _connected(candidates: Candidates) -> Candidates:
    """The connected candidates; all of them when none is (their copies wait for one)."""
    return [c for c in candidates if c[0].ready.is_set()] or candidates


def _copies(plan: Plan) -> Copies:
    return [(peer, tuple(i for i, _ in entries), entries) for peer, entries in plan.items()]


def _expire(waited: asyncio.Future[Any]) -> None:
    if not waited.done():
        waited.set_exception(TimeoutError())


class _Deadlines:
    """Timeouts of requests and lone publishes without a timer each. A timer cancelled once its
    future is done stays in the event loop's heap until it is due, which with thousands of
    requests a second costs every one of them. Here the futures waited for are kept in
    the order their deadlines come, and one timer is set, for the earliest; a future that is
    still waiting at its deadline gets ``TimeoutError``. The timers are the clock thread's
    (``meshbus._clock``): with requests always in flight one is always pending, which in the
    event loop's heap would cost every turn of the loop."""

    __slots__ = ("_loop", "_timer", "_waiting")

    def __init__(self) -> None:
        self._waiting: deque[tuple[float, asyncio.Future[Any]]] = deque()
        self._timer: Alarm | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def add(self, reply: asyncio.Future[Any], timeout: float) -> float:
        """Fail ``reply`` with ``TimeoutError`` if it is not done within ``timeout`` seconds;
        return the deadline (``time.monotonic``)."""
        loop = self._loop
        if loop is None:
            loop = self._loop = reply.get_loop()
        deadline = time.monotonic() + timeout
        waiting = self._waiting
        while waiting and waiting[0][1].done():
            waiting.popleft()
        if waiting and deadline < waiting[-1][0]:
            # Due before one already waiting (a shorter timeout): a timer of its own.
            timer = _clock.call_at(loop, deadline, lambda: _expire(reply))
            reply.add_done_callback(lambda _: timer.cancel())
            return deadline
        waiting.append((deadline, reply))
        if self._timer is None:
            self._timer = _clock.call_at(loop, deadline, self._due)
        return deadline

    def _due(self) -> None:
        assert self._loop is not None
        self._timer = None
        now = time.monotonic()
        waiting = self._waiting
        while waiting:
            deadline, reply = waiting[0]
            if not reply.done():
                if deadline > now:
                    break
                reply.set_exception(TimeoutError())
            waiting.popleft()
        if waiting:
            self._timer = _clock.call_at(self._loop, waiting[0][0], self._due)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


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
        self._routes: BoundedCache[str, _Route] = BoundedCache()
        self._deadlines = _Deadlines()
        self._closed = False

    def _add_peer(self, host: str, port: int) -> Peer:
        """Start dialling one more peer."""
        peer = Peer(host, port, self.config, self._hello, self._peer_state)
        peer.on_change = self._routes.clear
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
        self._routes.clear()
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

    def _connected(self) -> bool:
        for peer in self.peers:  # noqa: SIM110 -- a loop costs less than any() per request
            if peer.ready.is_set():
                return True
        return False

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

    def _route(self, subject: str) -> _Route:
        broadcast: Plan = {}
        groups: dict[GroupKey, Candidates] = {}
        for peer in self.peers:
            # A disconnected peer counts with its last known interests: its copies wait for it.
            for interest in peer.index.lookup(subject):
                if interest.group is None:
                    broadcast.setdefault(peer, []).append((interest.id, None))
                else:
                    key = (interest.pattern, interest.group)
                    groups.setdefault(key, []).append((peer, interest.id))
        return self._routes.put(subject, _Route(broadcast, list(groups.items())))

    def _plan(self, envelope: Envelope, exclude: set[tuple[Peer, GroupKey]] | None = None) -> Plan:
        """Where the copies of ``envelope`` go: every broadcast interest, and one member per
        group — by key where it has one, so a key's messages stay in order; round robin
        otherwise — leaving out the members in ``exclude`` (which refused it)."""
        route = self._routes.get(envelope.subject) or self._route(envelope.subject)
        plan: Plan = {peer: list(entries) for peer, entries in route.broadcast.items()}
        if exclude is None:
            groups = route.groups
        else:
            groups = []
            for key, everyone in route.everyone:
                left = [c for c in everyone if (c[0], key) not in exclude]
                if left:
                    groups.append((key, _connected(left)))
        for key, candidates in groups:
            if envelope.key is not None:
                peer, interest_id = candidates[hash(envelope.key) % len(candidates)]
            else:
                peer, interest_id = candidates[next(self._round_robin) % len(candidates)]
            plan.setdefault(peer, []).append((interest_id, key))
        return plan

    def _copies(self, envelope: Envelope) -> Copies:
        """The copies of ``envelope`` to send: the route's own when it leaves no choice."""
        route = self._routes.get(envelope.subject) or self._route(envelope.subject)
        if route.fixed is not None:
            return route.fixed
        return _copies(self._plan(envelope))

    async def _publish(self, envelopes: Sequence[Envelope]) -> None:
        """Send every copy of every envelope, pipelined (PUB frames per peer), then wait for
        their fates; copies not accepted go through ``_confirm``, envelope by envelope."""
        per_peer: dict[Peer, tuple[list[Item], list[Entries]]] = {}
        for envelope in envelopes:
            for peer, targets, why in self._copies(envelope):
                lists = per_peer.get(peer)
                if lists is None:
                    lists = per_peer[peer] = ([], [])
                lists[0].append((envelope, targets, False))
                lists[1].append(why)
        sent: list[tuple[Peer, list[Item], list[Entries], list[tuple[Batch, int]]]] = []
        for peer, (items, whys) in per_peer.items():
            batches: list[tuple[Batch, int]] = []
            with contextlib.suppress(ConnectionLost):
                await peer.send(items, batches)
            sent.append((peer, items, whys, batches))
        failed: dict[int, tuple[Envelope, Outcomes]] = {}
        for peer, items, whys, batches in sent:
            covered = 0
            for batch, start in batches:
                await batch.done
                covered = start + batch.last - batch.first + 1
                if batch.all_accepted:
                    continue
                for at in range(start, covered):
                    fate = batch.fate(batch.first + at - start)
                    if fate != ACCEPTED:
                        envelope = items[at][0]
                        failed.setdefault(id(envelope), (envelope, []))[1].append(
                            (peer, whys[at], fate)
                        )
            for at in range(covered, len(items)):  # never sent: the connection went first
                envelope = items[at][0]
                failed.setdefault(id(envelope), (envelope, []))[1].append((peer, whys[at], LOST))
        for envelope, outcomes in failed.values():
            await self._confirm(envelope, outcomes)

    async def _send(self, envelope: Envelope, plan: Plan) -> Outcomes:
        """Send one envelope's copies as ``plan`` says and wait for their fates."""
        sent: list[tuple[Peer, Entries, list[tuple[Batch, int]]]] = []
        for peer, entries in plan.items():
            batches: list[tuple[Batch, int]] = []
            with contextlib.suppress(ConnectionLost):
                await peer.send([(envelope, tuple(i for i, _ in entries), False)], batches)
            sent.append((peer, entries, batches))
        outcomes: Outcomes = []
        for peer, entries, batches in sent:
            outcome = LOST
            if batches:
                batch = batches[0][0]
                await batch.done
                outcome = batch.fate(batch.first)
            outcomes.append((peer, entries, outcome))
        return outcomes

    async def _confirm(self, envelope: Envelope, outcomes: Outcomes) -> None:
        """Finish the copies of ``envelope`` that were not accepted. A refused group copy goes
        to another member; a copy lost with its connection stays owed until its peer is back
        (or nobody wants it any more); the caller's timeout bounds the wait."""
        refused: set[tuple[Peer, GroupKey]] = set()
        lost: set[Peer] = set()
        while True:
            owed_peers: set[Peer] = set()
            owed_groups: set[GroupKey] = set()
            for peer, entries, outcome in outcomes:
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
            outcomes = await self._send(envelope, plan)

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
        route = self._routes.get(envelope.subject)
        if route is None or timeout is None:
            await self.publish_many((envelope,), timeout)
            return
        copies = route.fixed
        if copies is None:  # a group with members to choose from
            copies = self._copies(envelope)
        if len(copies) != 1:
            await self.publish_many((envelope,), timeout)
            return
        # The usual lone publish: one peer to send it to, sent at once, its ACCEPT waited for
        # here, bounded by _deadlines (asyncio.timeout costs more than the rest of the work).
        peer, targets, why = copies[0]
        batch = peer.send_one(envelope, targets)  # None if not connected or out of credit
        if batch is None:
            await self.publish_many((envelope,), timeout)
            return
        loop = asyncio.get_running_loop()
        started = loop.time()
        self._deadlines.add(batch.done, timeout)
        conn = peer.conn
        if conn is not None and conn.wire.paused:
            with contextlib.suppress(ConnectionLost):  # then its end settles the batch: LOST
                await conn.drain()
        try:
            await batch.done
        except TimeoutError:
            raise self._timed_out(1, timeout) from None
        fate = batch.fate(batch.first)
        if fate == ACCEPTED:
            return
        try:  # refused or lost: another member, or the peer once it is back
            async with asyncio.timeout(max(0.0, timeout - (loop.time() - started))):
                await self._confirm(envelope, [(peer, why, fate)])
        except TimeoutError:
            raise self._timed_out(1, timeout) from None

    def _timed_out(self, count: int, timeout: float | None) -> PublishTimeout:
        what = "message" if count == 1 else "batch"
        return PublishTimeout(
            f"the {self.config.scheme}:// peers did not take the {what} within {timeout:g} s"
        )

    async def publish_many(self, envelopes: Sequence[Envelope], timeout: float | None) -> None:
        try:
            async with asyncio.timeout(timeout):
                if not self._connected():
                    await self._wait_connected(None)
                await self._publish(envelopes)
        except TimeoutError:
            raise self._timed_out(len(envelopes), timeout) from None

    async def request(self, envelope: Envelope, timeout: float) -> Message:
        # The listener sets mb-correlation-id from the PUB's message id: not sent twice.
        route = self._routes.get(envelope.subject)
        if route is None:
            if not self._connected():
                return await self._request(envelope, timeout)
            route = self._route(envelope.subject)
        copies = route.fixed
        if copies is None:  # a group with members to choose from
            copies = self._copies(envelope)
        if len(copies) != 1:
            return await self._request(envelope, timeout)
        # The usual case: one peer to ask, asked at once without waiting for anything, the
        # reply waited for here, bounded by _deadlines (asyncio.timeout costs more than the
        # rest of a request's own work on this path).
        peer, targets, _ = copies[0]
        reply = peer.send_request(envelope, targets)  # None if not connected or out of credit
        if reply is None:
            return await self._request(envelope, timeout)
        seq = peer.seq
        deadline = self._deadlines.add(reply, timeout)
        try:
            answer = await reply
        except TimeoutError:
            peer.forget(seq)
            raise RequestTimeout(envelope.subject, timeout) from None
        except Refused:  # not taken (its listener is closing, or lost the group): ask again
            left = deadline - time.monotonic()
            if left <= 0:
                raise RequestTimeout(envelope.subject, timeout) from None
            return await self._request(envelope, left, refused_by={peer})
        except BaseException:  # cancelled (or lost): nobody waits for its reply any more
            peer.forget(seq)
            raise
        return Message.delivered(
            envelope.subject,
            answer.data,
            answer.headers,
            None,
            envelope.id,
            1,
            None,
            NO_SETTLER,
            None,
        )

    async def _request(
        self, envelope: Envelope, timeout: float, refused_by: set[Peer] | None = None
    ) -> Message:
        """The long way: ask each chosen peer that is connected (waiting, within the timeout,
        while none is: a member restarting comes back), take the first answer. A refused
        request was not taken, so it is asked again: of another member, or of the one that
        takes over (``refused_by``: who refused it already, not asked again before something
        changes)."""
        waiting: list[tuple[Peer, asyncio.Future[Reply]]] = []
        if refused_by is None:
            refused_by = set()
        try:
            async with asyncio.timeout(timeout):
                while True:
                    if not self._connected():
                        await self._wait_connected(None)
                    copies = self._copies(envelope)
                    if not copies:
                        raise NoResponders(envelope.subject)
                    asked = [(peer, targets) for peer, targets, _ in copies if peer.ready.is_set()]
                    if not asked or refused_by.issuperset(peer for peer, _ in asked):
                        await self._changed()  # nobody to ask now, or only who just refused
                        refused_by.clear()
                        continue
                    for peer, targets in asked:
                        with contextlib.suppress(ConnectionLost):  # gone meanwhile
                            waiting.append((peer, await peer.request(envelope, targets)))
                    pending = {reply for _, reply in waiting}
                    lost = False
                    while pending:
                        done, pending = await asyncio.wait(
                            pending, return_when=asyncio.FIRST_COMPLETED
                        )
                        for future in done:
                            error = future.exception()
                            if error is None:
                                answer = future.result()
                                return Message(
                                    envelope.subject, answer.data, answer.headers, id=envelope.id
                                )
                            if isinstance(error, Refused):
                                refused_by.update(p for p, r in waiting if r is future)
                            else:
                                lost = True
                    if lost:  # it may have been answered there: not asked twice
                        raise ConnectionLost(
                            "every peer the request went to was lost before replying"
                        )
                    waiting = []
        except TimeoutError:
            raise RequestTimeout(envelope.subject, timeout) from None
        finally:
            for peer, reply in waiting:
                if not reply.done():
                    peer.forget_reply(reply)
                elif not reply.cancelled():
                    reply.exception()  # retrieved: no "never retrieved" noise

    async def subscribe(
        self, pattern: str, group: str | None, prefetch: int
    ) -> TransportSubscription:
        raise NotSupported(
            f"subscriptions on {self.config.scheme}:// are served by the bus's listen address"
        )

    async def declare_group(self, pattern: str, group: str) -> None:
        raise NotSupported("direct channels are not durable: a group exists while a member does")

    def health(self) -> Literal["connecting", "connected", "reconnecting", "closed"]:
        """``connected`` while some peer is (``ReportsHealth``)."""
        if self._closed:
            return "closed"
        return "connected" if self._connected() else "reconnecting"

    async def close(self, timeout: float) -> None:
        self._closed = True
        await asyncio.gather(*(peer.stop() for peer in self.peers))
        self._deadlines.close()
