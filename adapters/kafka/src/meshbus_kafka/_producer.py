"""The producer of a ``kafka://`` transport, fenced and replaced after a publish that failed.

aiokafka keeps a batch it could not deliver and retries it until its own timeout, so a publish
that meshbus reported as failed could still reach the log later, after messages published
since. To keep the outcome well defined, a publish that times out or loses its connection
*fences* the producer: it sends nothing more (its sender stops at once), every publish still
waiting on it raises ``ConnectionLost``, and it is closed in the background. The next publish
starts a new producer, trying to connect until that publish's own timeout runs out. A publish
that raised is therefore either in the log before anything published after it, or not at all.

Fencing needs two of aiokafka's internals (``_compat.abandon``): aiokafka has no public way to
abandon what it has queued. Without them the first producer does not start
(``NotSupported``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import aiokafka.errors as kafka
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from meshbus.errors import ConnectFailed, MeshbusTimeout, PublishRejected, TransportError
from meshbus_kafka._compat import abandon, require_abandon
from meshbus_kafka._errors import KAFKA_ERRORS, mapped
from meshbus_kafka._options import KafkaOptions

__all__ = ["Partitioner", "Producer", "Records", "connect_failed", "send_batches"]

Records = list[tuple[bytes | None, bytes, list[Any]]]
"""Key, value and headers of records bound for one partition, in order."""

_RECONNECTABLE = (
    kafka.KafkaConnectionError,
    kafka.NodeNotReadyError,
    kafka.NoBrokersAvailable,
    kafka.KafkaUnavailableError,
    kafka.KafkaTimeoutError,
    kafka.RequestTimedOutError,
    OSError,
    TimeoutError,
)
"""Errors of starting a producer that mean "the broker is not there (yet)": try again."""

RETRY_DELAYS = (0.05, 0.1, 0.2, 0.5, 1.0)
"""Seconds between attempts to start a new producer (the last one repeats)."""


class Partitioner:
    """Kafka's murmur2 for keyed records; records without a key all go to one partition per
    publisher (chosen by its client id), so that one publisher's messages keep their order."""

    def __init__(self, client_uid: str) -> None:
        self.slot = int(client_uid, 16)
        self.default = DefaultPartitioner()

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            return all_partitions[self.slot % len(all_partitions)]
        partition: int = self.default(key, all_partitions, available)
        return partition


class Producer:
    """The transport's current aiokafka producer (see the module docstring)."""

    def __init__(self, options: KafkaOptions, partitioner: Partitioner, max_request: int) -> None:
        self.options = options
        self.partitioner = partitioner
        self.max_request = max_request
        self.fenced = 0
        """How many producers were fenced so far."""
        self._current: Any = None
        self._lock = asyncio.Lock()
        self._retiring: set[asyncio.Task[None]] = set()
        self._on_fence: list[Callable[[], None]] = []

    def on_fence(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever a producer is fenced (the transport forgets its topics)."""
        self._on_fence.append(callback)

    def _make(self) -> Any:
        opts = self.options
        return AIOKafkaProducer(
            **opts.client_kwargs(),
            acks="all",
            enable_idempotence=opts.idempotence,
            linger_ms=opts.linger_ms,
            max_batch_size=opts.max_batch_size,
            max_request_size=self.max_request,
            partitioner=self.partitioner,
        )

    async def start(self) -> None:
        """The first producer: failing to connect raises at once (``ConnectFailed`` is the
        transport's to raise, with its hint)."""
        producer = self._make()
        try:
            require_abandon(producer)
            await producer.start()
        except BaseException:
            with contextlib.suppress(*KAFKA_ERRORS):
                await producer.stop()
            raise
        self._current = producer

    async def current(self) -> Any:
        """The live producer; after a fence, a new one, tried until the caller's timeout."""
        producer = self._current
        if producer is not None:
            return producer
        async with self._lock:
            attempt = 0
            while self._current is None:
                producer = self._make()
                try:
                    await producer.start()
                except _RECONNECTABLE:
                    with contextlib.suppress(*KAFKA_ERRORS):
                        await producer.stop()
                    await asyncio.sleep(RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)])
                    attempt += 1
                    continue
                except BaseException:
                    with contextlib.suppress(*KAFKA_ERRORS):
                        await producer.stop()
                    raise
                self._current = producer
            return self._current

    def fence(self, producer: Any) -> None:
        """Stop ``producer`` from sending anything more and fail what it still holds; the
        next publish gets a new producer. Nothing happens if it was fenced already."""
        if producer is not self._current:
            return
        self._current = None
        self.fenced += 1
        abandon(
            producer, kafka.KafkaConnectionError("the producer was fenced after a publish failed")
        )
        task = asyncio.create_task(self._retire(producer))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)
        for callback in self._on_fence:
            callback()

    @staticmethod
    async def _retire(producer: Any) -> None:
        with contextlib.suppress(*KAFKA_ERRORS, asyncio.CancelledError):
            await producer.stop()

    async def deliver(
        self,
        subject: str,
        timeout: float | None,
        enqueue: Callable[[Any, list[Any]], Awaitable[None]],
    ) -> None:
        """Within ``timeout``: get the producer, let ``enqueue(producer, futures)`` queue
        records (appending their futures), then wait for every ``acks=all`` answer. A timeout
        or a lost connection fences the producer; the error is raised mapped."""
        futures: list[Any] = []
        producer = None
        try:
            with mapped("publish", subject, timeout or 0):
                async with asyncio.timeout(timeout):
                    producer = await self.current()
                    await enqueue(producer, futures)
                    if len(futures) == 1:
                        await futures[0]
                    elif futures:
                        await asyncio.gather(*futures)
        except (MeshbusTimeout, TransportError) as exc:
            _observe(futures)
            if producer is not None and not isinstance(exc, PublishRejected):
                self.fence(producer)
            raise
        except BaseException:
            _observe(futures)
            raise

    async def close(self) -> None:
        """Flush and stop the live producer; wait for fenced ones to finish closing."""
        producer, self._current = self._current, None
        if producer is not None:
            with contextlib.suppress(*KAFKA_ERRORS):
                await producer.stop()
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)


async def send_batches(
    producer: Any, slots: dict[tuple[str, int], Records], futures: list[Any]
) -> None:
    """Queue each partition's records as closed batches (sent at once, without lingering;
    aiokafka keeps a partition's batches in order), appending one future per batch."""
    for (topic, partition), records in slots.items():
        batch = producer.create_batch()
        for key, data, headers in records:
            if batch.append(timestamp=None, key=key, value=data, headers=headers) is None:
                futures.append(await producer.send_batch(batch, topic, partition=partition))
                batch = producer.create_batch()
                batch.append(timestamp=None, key=key, value=data, headers=headers)
        batch.close()
        futures.append(await producer.send_batch(batch, topic, partition=partition))


def _observe(futures: list[Any]) -> None:
    """Mark the outcome of abandoned send futures as seen (no "never retrieved" noise)."""
    for future in futures:
        if future.done():
            if not future.cancelled():
                future.exception()
        else:
            future.add_done_callback(_seen)


def _seen(future: Any) -> None:
    if not future.cancelled():
        future.exception()


def connect_failed(servers: str, exc: BaseException, idempotence: bool) -> ConnectFailed:
    """The error for a first connection that failed."""
    hint = ""
    if idempotence and not isinstance(exc, TimeoutError | OSError):
        hint = " (a broker without idempotent producers needs idempotence=false)"
    return ConnectFailed(f"cannot connect to Kafka at {servers}: {exc!r}{hint}")
