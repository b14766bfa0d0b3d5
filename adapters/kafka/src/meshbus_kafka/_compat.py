"""The one place this adapter reaches into aiokafka's internals, each checked here when the
module is imported.

- ``partitions`` (``METADATA``, a shortcut): the partitions of some topics, read from a
  consumer's own client (``consumer._client``: ``force_metadata_update()``, then
  ``cluster``), so that the consumer about to be assigned them knows them too. Where the check
  fails, and under ``MESHBUS_SAFE=1`` (``meshbus.fastpath``), the public path answers: the
  admin client's ``describe_topics`` of every topic (naming them could create them).
- ``abandon`` (``ABANDON``, a necessity): make a producer send nothing more and fail every
  record it still holds, by cancelling its sender task (``producer._sender.sender_task``) and
  failing its accumulator's batches (``producer._message_accumulator.fail_all``). This is how a
  publish that failed stays failed (contract point 5, see ``_producer``), and aiokafka has no
  public way to drop what it has queued: stopping the producer sends it. So it is not turned
  off by ``MESHBUS_SAFE=1``, and where the check fails ``require_abandon`` raises
  ``NotSupported`` when the transport starts, rather than let a failed publish reach the log
  later.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

from aiokafka import TopicPartition

from meshbus.errors import NotSupported
from meshbus.fastpath import enabled

__all__ = ["ABANDON", "METADATA", "abandon", "partitions", "require_abandon"]


def _parameters(owner: object, name: str) -> list[str]:
    method = getattr(owner, name, None)
    return list(inspect.signature(method).parameters) if callable(method) else []


try:
    from aiokafka.client import AIOKafkaClient
    from aiokafka.cluster import ClusterMetadata
    from aiokafka.producer.message_accumulator import MessageAccumulator
    from aiokafka.producer.sender import Sender
except ImportError:  # pragma: no cover - an aiokafka laid out otherwise
    _FOUND = False
else:
    _FOUND = True

METADATA: bool = enabled(
    _FOUND
    and _parameters(AIOKafkaClient, "force_metadata_update") == ["self"]
    and _parameters(ClusterMetadata, "partitions_for_topic") == ["self", "topic"]
)
"""Whether ``partitions`` reads a consumer's own client."""

ABANDON: bool = (
    _FOUND
    and isinstance(getattr(Sender, "sender_task", None), property)
    and _parameters(MessageAccumulator, "fail_all") == ["self", "exception"]
)
"""Whether ``abandon`` can drop what a producer holds (the classes have what it uses)."""


async def partitions(
    consumer: Any, admin: Any, topics: Iterable[str], *, refresh: bool = False
) -> list[Any]:
    """Every ``TopicPartition`` of ``topics`` (none for a topic that does not exist).
    Metadata the consumer has is used where it knows a topic (unless ``refresh``), and
    fetched again where it does not."""
    topics = list(topics)
    client = getattr(consumer, "_client", None) if METADATA else None
    cluster = getattr(client, "cluster", None)
    if client is None or cluster is None:
        # Every topic: a metadata request that names a topic may create it (auto-creation).
        wanted = set(topics)
        described = await admin.describe_topics() if wanted else []
        return [
            TopicPartition(found["topic"], part["partition"])
            for found in described
            if found["topic"] in wanted
            for part in found["partitions"]
        ]
    if refresh:
        await client.force_metadata_update()
    found: list[Any] = []
    for topic in topics:
        numbers = cluster.partitions_for_topic(topic)
        if not numbers and not refresh:
            await client.force_metadata_update()
            numbers = cluster.partitions_for_topic(topic)
        found.extend(TopicPartition(topic, number) for number in numbers or ())
    return found


def require_abandon(producer: Any) -> None:
    """``NotSupported`` unless ``abandon`` works on ``producer`` (checked on the first
    producer, as it starts)."""
    if not (
        ABANDON
        and isinstance(getattr(producer, "_sender", None), Sender)
        and isinstance(getattr(producer, "_message_accumulator", None), MessageAccumulator)
    ):
        from aiokafka import __version__

        raise NotSupported(
            f"meshbus-kafka cannot drop what a failed producer holds with aiokafka {__version__}"
            " (see meshbus_kafka._compat); install the aiokafka version its package names"
        )


def abandon(producer: Any, error: BaseException) -> None:
    """Stop ``producer`` from sending anything more and fail every record it holds with
    ``error`` (on a producer ``require_abandon`` accepted)."""
    task = producer._sender.sender_task
    if task is not None:
        task.cancel()  # drains no further batch from here on
    producer._message_accumulator.fail_all(error)
