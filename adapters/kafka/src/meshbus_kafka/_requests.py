"""Requests of one ``kafka://`` transport and their replies: the reply topic
``_mb_reply_<client id>``, one partition, read by a private consumer from its start; replies
are matched to requests by ``mb-correlation-id``. Made at the first request, deleted on
close."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiokafka import TopicPartition

from meshbus.headers import CORRELATION_ID, MESSAGE_ID
from meshbus.message import Message
from meshbus_kafka._errors import KAFKA_ERRORS, mapped
from meshbus_kafka._records import Host, LostLogs

__all__ = ["REPLY_FETCH_WAIT_MS", "Replies"]

REPLY_FETCH_WAIT_MS = 5
"""The reply reader's fetch wait: on brokers that wait it out, it is the reply latency."""


class Replies:
    """Waiting requests and the reader of their replies."""

    def __init__(self, transport: Host, topic: str) -> None:
        self.transport = transport
        self.topic = topic
        self.waiting: dict[str, asyncio.Future[Message]] = {}
        self.consumer: Any = None
        self.task: asyncio.Task[None] | None = None
        self.lock = asyncio.Lock()

    async def start(self) -> None:
        if self.task is not None:
            return
        async with self.lock:
            if self.task is not None:
                return
            await self.transport.ensure_topic(self.topic, partitions=1)
            consumer = self.transport.make_consumer(
                group_id=None, auto_offset_reset="earliest", fetch_max_wait_ms=REPLY_FETCH_WAIT_MS
            )
            with mapped("request", self.topic):
                await consumer.start()
                tp = TopicPartition(self.topic, 0)
                consumer.assign([tp])
                consumer.seek(tp, 0)
            self.consumer = consumer
            self.task = asyncio.create_task(self._read())

    def expect(self, correlation: str) -> asyncio.Future[Message]:
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self.waiting[correlation] = future
        return future

    def forget(self, correlation: str) -> None:
        self.waiting.pop(correlation, None)

    async def _read(self) -> None:
        lost = LostLogs(self.consumer)
        while True:
            try:
                batches = await self.consumer.getmany(timeout_ms=1000)
                if not batches:
                    await lost.check()
            except KAFKA_ERRORS:
                await asyncio.sleep(0.2)
                continue
            for records in batches.values():
                for record in records:
                    headers = {name: value.decode() for name, value in record.headers}
                    future = self.waiting.pop(headers.pop(CORRELATION_ID, ""), None)
                    if future is not None and not future.done():
                        message_id = headers.get(MESSAGE_ID, "")
                        future.set_result(
                            Message(self.topic, record.value or b"", headers, id=message_id)
                        )

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        if self.consumer is not None:
            with contextlib.suppress(*KAFKA_ERRORS):
                await self.consumer.stop()
            await self.transport.delete_topic(self.topic)
