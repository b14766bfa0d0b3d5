"""Group members of the ``kafka://`` channel: one consumer in the group's Kafka consumer
group, with manual commits.

- The consumer group is ``<group>@<pattern>``; it reads the pattern's topics (by name, or by
  regular expression for wildcards) and its own retry topic.
- Offsets are committed every ``commit_interval`` seconds, when partitions are revoked and on
  close, and only up to the first unsettled record of each partition (``_tracker``).
- ``nack(delay)`` publishes the message to the retry topic (attempt + 1, due time in headers)
  and settles the original, so the partition does not stall; a retry record is held in memory
  until due. ``reject(reason)`` publishes to ``dead-letter.<group>`` and settles.
- At most ``prefetch`` records are fetched and not yet settled; past that the member pauses its
  partitions (still polling, so it stays in the group).
- Messages handed out and still unsettled when their partition is revoked (after waiting
  ``rebalance_grace``) or the member closes (after the drain timeout) are given back through
  the retry topic with the attempt counted; settling them afterwards changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from aiokafka.abc import ConsumerRebalanceListener

from meshbus.errors import Closed, ConnectFailed
from meshbus.message import Message
from meshbus_kafka._errors import KAFKA_ERRORS, mapped
from meshbus_kafka._naming import group_id, pattern_regex, retry_topic, topic_of
from meshbus_kafka._records import Host, LostLogs, RecordInbox, make_message
from meshbus_kafka._tracker import Partition, Token

__all__ = ["DUE_HEADER", "Member"]

PAUSED_POLL = 0.2
"""Seconds between polls while a member's prefetch is full (its partitions paused)."""

DUE_HEADER = "mb-due"
"""Header of retry records: when (ms since the epoch) to deliver the message again."""


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, member: Member) -> None:
        self.member = member

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.member.revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.member.assigned(set(assigned))


class Member(RecordInbox):
    """One member of a group (see the module docstring)."""

    def __init__(self, transport: Host, pattern: str, group: str, prefetch: int) -> None:
        super().__init__(transport, pattern, prefetch=prefetch)
        self.group = group
        self.kafka_group = group_id(group, pattern)
        self.retry = retry_topic(self.kafka_group)
        self.options = transport.options
        self.parts: dict[Any, Partition] = {}
        self.delayed: set[Message] = set()
        self.joined = asyncio.Event()
        self.consumer: Any = None
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        transport = self.transport
        await transport.ensure_topic(self.retry)
        if self.wildcard:
            regex = f"(?:{pattern_regex(self.pattern)})|^{self.retry}$"
            extra = {"metadata_max_age_ms": int(self.options.discover_interval * 1000)}
        else:
            topic = topic_of(self.pattern)
            await transport.ensure_topic(topic)
            await transport.pin_group(self.kafka_group, [topic])
            extra = {}
        self.consumer = consumer = transport.make_consumer(
            group_id=self.kafka_group, auto_offset_reset="earliest", **extra
        )
        listener = _Listener(self)
        if self.wildcard:
            consumer.subscribe(pattern=regex, listener=listener)
        else:
            consumer.subscribe(topics=[topic, self.retry], listener=listener)
        wait = max(10.0, self.options.session_timeout_ms / 1000 * 3)
        try:
            with mapped("subscribe", self.pattern):
                await consumer.start()
            async with asyncio.timeout(wait):
                await self.joined.wait()
        except TimeoutError:
            await consumer.stop()
            raise ConnectFailed(
                f"joining the Kafka consumer group {self.kafka_group!r} took over {wait:g} s"
            ) from None
        except BaseException:
            await consumer.stop()
            raise
        self.tasks = [asyncio.create_task(self._fetch()), asyncio.create_task(self._commits())]

    # -- rebalancing -----------------------------------------------------------------------

    def assigned(self, tps: set[Any]) -> None:
        for tp in tps:
            self.parts[tp] = Partition(tp)
        self.joined.set()

    async def revoked(self, tps: set[Any]) -> None:
        """Let handed-out messages of ``tps`` be settled for a while, give back the rest,
        commit, and forget the partitions (queued records come again from the new owner)."""
        if not tps:
            return
        await self._drain(self.options.rebalance_grace, lambda m: m.token.part.tp in tps)
        for message in [m for m in self.in_flight.values() if m.token.part.tp in tps]:
            await self._give_back(message)
        await self._commit([self.parts[tp] for tp in tps if tp in self.parts])
        for tp in tps:
            part = self.parts.pop(tp, None)
            if part is not None:
                part.live = False
        for message in [m for m in self.delayed if not m.token.part.live]:
            message.token.timer.cancel()
            self.delayed.discard(message)
        self._changed()  # room to fetch

    # -- fetching --------------------------------------------------------------------------

    def _room(self) -> int:
        return self.prefetch - len(self.queue) - len(self.in_flight) - len(self.delayed)

    async def _fetch(self) -> None:
        consumer = self.consumer
        lost = LostLogs(consumer)
        loop = asyncio.get_running_loop()
        paused = False
        while not self.closing:
            room = self._room()
            try:
                if room <= 0:
                    if not paused:
                        consumer.pause(*consumer.assignment())
                        paused = True
                    room = await self._wait_for_room()
                if room > 0 and paused:
                    consumer.resume(*consumer.assignment())
                    paused = False
                wait = 200 if room > 0 else 0  # paused: poll only to stay in the group
                batches = await consumer.getmany(timeout_ms=wait, max_records=max(room, 1))
                if not batches and not paused:
                    for tp in await lost.check():
                        self._lost(tp)
            except KAFKA_ERRORS:
                if self.closing:
                    return
                await asyncio.sleep(0.2)
                continue
            now = time.time()
            for tp, records in batches.items():
                part = self.parts.get(tp)
                if part is None:
                    continue
                for record in records:
                    part.fetched(record.offset)
                    decoded = self.decode(record)
                    if decoded is None:
                        part.settle(record.offset)
                        continue
                    subject, headers = decoded
                    token = Token(part, record.offset)
                    message = make_message(subject, headers, record, self, token)
                    due = headers.pop(DUE_HEADER, None)
                    if due is not None and (delay := int(due) / 1000 - now) > 0:
                        self.delayed.add(message)
                        token.timer = loop.call_later(delay, self._due, message)
                    else:
                        self.push(message)

    async def _wait_for_room(self) -> int:
        """Wait (up to ``PAUSED_POLL`` seconds) until settling has freed half the prefetch."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PAUSED_POLL
        while (room := self._room()) * 2 < self.prefetch and not self.closing:
            left = deadline - loop.time()
            if left <= 0:
                break
            await self.wait_settled(left)
        return room

    def _lost(self, tp: Any) -> None:
        """The broker lost ``tp``'s log (see ``LostLogs``): track it afresh; messages
        still handed out from the old log settle nothing."""
        old = self.parts.get(tp)
        if old is not None:
            old.live = False
            self.parts[tp] = Partition(tp)

    def _due(self, message: Message) -> None:
        self.delayed.discard(message)
        if not self.closing:
            self.push(message)

    def _take(self, message: Message) -> Message | None:
        token: Token = message.token
        if not token.part.live:
            return None
        self.in_flight[token] = message
        return message

    # -- committing ------------------------------------------------------------------------

    async def _commits(self) -> None:
        while True:
            await asyncio.sleep(self.options.commit_interval)
            await self._commit(list(self.parts.values()))

    async def _commit(self, parts: list[Partition]) -> None:
        offsets: dict[Any, int] = {}
        for part in parts:
            position = part.position()
            if position is not None and position != part.committed and part.live:
                offsets[part.tp] = position
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except KAFKA_ERRORS:
            return  # a rebalance is under way: committed again when it settles
        for part in parts:
            if part.tp in offsets:
                part.committed = offsets[part.tp]

    # -- settling --------------------------------------------------------------------------

    async def ack(self, message: Message) -> None:
        """Mark the record settled; its offset is committed once all before it are."""
        if self._release(message):
            token: Token = message.token
            token.part.settle(token.offset)

    async def nack(self, message: Message, delay: float | None) -> None:
        """Publish the message to the retry topic (due after ``delay``), then settle it."""
        if not self._release(message):
            return
        token: Token = message.token
        limit = self.options.max_deliver
        if 0 < limit <= message.attempt:
            reason = f"delivered {message.attempt} times, the group's max_deliver"
            await self.transport.dead_letter(message, self.group, reason)
        else:
            await self.transport.retry(self.retry, message, delay)
        token.part.settle(token.offset)

    async def reject(self, message: Message, reason: str) -> None:
        """Publish to ``dead-letter.<group>`` (confirmed), then settle."""
        if self._release(message):
            await self.transport.dead_letter(message, self.group, reason)
            token: Token = message.token
            token.part.settle(token.offset)

    async def progress(self, message: Message) -> None:
        """Nothing to do: Kafka runs no per-message timer (the member keeps polling)."""

    async def _give_back(self, message: Message) -> None:
        """Publish ``message`` to the retry topic and settle it; it is no longer in flight, so
        settling it afterwards changes nothing."""
        token: Token = message.token
        self._release(message)
        try:
            await self.transport.retry(self.retry, message, None)
        except Exception:
            return  # left unsettled: the partition's next owner delivers it again
        token.part.settle(token.offset)

    async def close(self, timeout: float) -> None:
        """Stop fetching, wait up to ``timeout`` for handed-out messages to be settled, give
        the rest back through the retry topic, commit, leave the group."""
        if self.closing:
            return
        self._stop()
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for message in self.delayed:
            message.token.timer.cancel()
        self.delayed.clear()
        await self._drain(timeout)
        for message in list(self.in_flight.values()):
            with contextlib.suppress(Closed):
                await self._give_back(message)
        await self._commit(list(self.parts.values()))
        with contextlib.suppress(*KAFKA_ERRORS):
            await self.consumer.stop()
        self.transport.forget(self)
