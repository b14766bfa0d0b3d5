"""Broadcast subscriptions of the ``kafka://`` channel.

A broadcast subscriber is a consumer of its own, without a consumer group (a private reader):
it assigns itself every partition of the matching topics and starts at their end, so it gets
what is published after ``subscribe()`` returns and nothing is kept for it while it is away.
Positions are fixed before ``subscribe()`` returns. A wildcard subscription looks for new
matching topics every ``discover_interval`` seconds and reads those from their beginning
(they were created after the subscription was active).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Any

from meshbus.message import Message
from meshbus_kafka._errors import KAFKA_ERRORS, mapped
from meshbus_kafka._naming import pattern_regex, topic_of
from meshbus_kafka._records import Host, LostLogs, RecordInbox, make_message

__all__ = ["Broadcast"]

BUFFER = 10_000
"""Messages a broadcast subscription holds before it stops fetching."""


class Broadcast(RecordInbox):
    """A private reader of every partition of the matching topics, from their end."""

    def __init__(self, transport: Host, pattern: str) -> None:
        super().__init__(transport, pattern, capacity=BUFFER)
        self.regex = re.compile(pattern_regex(pattern))
        self.consumer: Any = None
        self.topics: set[str] = set()
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        transport = self.transport
        if not self.wildcard:
            await transport.ensure_topic(topic_of(self.pattern))
        self.consumer = transport.make_consumer(group_id=None, auto_offset_reset="earliest")
        with mapped("subscribe", self.pattern):
            try:
                await self.consumer.start()
                found = await self._matching()
                tps = await transport.partitions(self.consumer, found)
                self.consumer.assign(tps)
                if tps:
                    await self.consumer.seek_to_end(*tps)
                    for tp in tps:  # fixes the positions now: the subscription is active
                        await self.consumer.position(tp)
            except BaseException:
                await self.consumer.stop()
                raise
        self.topics = found
        self.task = asyncio.create_task(self._run())

    async def _matching(self) -> set[str]:
        if not self.wildcard:
            return {topic_of(self.pattern)}
        return {t for t in await self.consumer.topics() if self.regex.match(t)}

    async def _discover(self) -> None:
        """Add new matching topics, read from their beginning; keep others' positions."""
        found = await self._matching()
        new = found - self.topics
        if not new:
            return
        consumer = self.consumer
        kept = {tp: await consumer.position(tp) for tp in consumer.assignment()}
        added = await self.transport.partitions(consumer, new)
        consumer.assign([*kept, *added])
        for tp, offset in kept.items():
            consumer.seek(tp, offset)
        if added:
            await consumer.seek_to_beginning(*added)
        self.topics |= new

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.transport.options.discover_interval
        next_look = loop.time() + interval
        consumer = self.consumer
        lost = LostLogs(consumer)
        while not self.closing:
            try:
                if self.wildcard and loop.time() >= next_look:
                    await self._discover()
                    next_look = loop.time() + interval
                if self.buffer_full():
                    await self.wait_for_room()
                    continue
                batches = await consumer.getmany(timeout_ms=int(interval * 1000))
                if not batches:
                    await lost.check()
            except KAFKA_ERRORS:
                if self.closing:
                    return
                await asyncio.sleep(0.2)
                continue
            for records in batches.values():
                for record in records:
                    decoded = self.decode(record)
                    if decoded is not None:
                        self.push(make_message(decoded[0], decoded[1], record, self, None))

    # -- settling a broadcast message changes nothing on the broker ---------------------

    async def ack(self, message: Message) -> None:
        """Nothing to do: a private reader keeps no offsets."""

    async def nack(self, message: Message, delay: float | None) -> None:
        """Nothing to do: nothing is kept for redelivery to a broadcast subscriber."""

    async def reject(self, message: Message, reason: str) -> None:
        """Nothing to do for broadcast messages."""

    async def progress(self, message: Message) -> None:
        """Nothing to do: no redelivery timer runs."""

    async def close(self, timeout: float) -> None:
        """Stop reading; settling a broadcast message changes nothing, so nothing waits."""
        if self.closing:
            return
        self._stop()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        with contextlib.suppress(*KAFKA_ERRORS):
            await self.consumer.stop()
        self.transport.forget(self)
