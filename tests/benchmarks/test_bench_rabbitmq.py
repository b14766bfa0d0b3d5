"""amqp:// throughput and request/reply beside raw aio-pika and FastStream in the same run, on
one local node.

- group one way (100 B, persistent, publisher confirms, 256 in flight): meshbus
  ``publish_many`` -> group member acking each, vs raw aio-pika ``exchange.publish`` gathered
  256 at a time -> consumer acking each, on a quorum queue, vs FastStream ``broker.publish``
  gathered the same way -> subscriber on a quorum queue (acks after the handler, prefetch 256);
- request/reply p50 (100 B), vs a raw aio-pika RPC over an exclusive reply queue, vs
  FastStream ``broker.request()`` (direct reply-to) to a subscriber that returns the body.

FastStream runs with ``logger=None``: its per-message log lines would halve it, and the figure
is meant to show the framework, not its logging.

``make bench`` prints the figures; under ``make test`` each runs once as a smoke test.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import aio_pika
import pytest
from conftest import (
    Runner,
    bench_round_trips,
    consume_acking,
    record_throughput,
    time_requests,
)

import meshbus
from meshbus.bus import Outgoing
from meshbus.testing.brokers import RabbitMQServer

pytest.importorskip("meshbus_rabbitmq", reason="pip install -e adapters/rabbitmq")
faststream_rabbit = pytest.importorskip(
    "faststream.rabbit", reason="pip install faststream[rabbit]"
)

COUNT = 10_240
BATCH = 256
ROUNDS = 1_000


@pytest.fixture(scope="module")
def server() -> Iterator[RabbitMQServer]:
    """One private RabbitMQ node for these benchmarks."""
    with RabbitMQServer() as node:
        yield node


def space() -> str:
    return "b" + uuid.uuid4().hex[:10]


async def raw_confirmed(url: str, count: int) -> None:
    payload = b"x" * 100
    name = space()
    pub, con = await aio_pika.connect(url), await aio_pika.connect(url)
    pch, cch = await pub.channel(), await con.channel()
    await cch.set_qos(prefetch_count=256)
    exchange = await pch.declare_exchange(name, aio_pika.ExchangeType.TOPIC)
    queue = await cch.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})
    await queue.bind(name, routing_key="data")
    done = asyncio.Event()
    received = 0

    async def on_msg(msg: aio_pika.abc.AbstractIncomingMessage) -> None:
        nonlocal received
        await msg.ack()
        received += 1
        if received == count:
            done.set()

    await queue.consume(on_msg)
    for _ in range(count // BATCH):
        await asyncio.gather(
            *(
                exchange.publish(
                    aio_pika.Message(payload, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key="data",
                )
                for _ in range(BATCH)
            )
        )
    await asyncio.wait_for(done.wait(), 120)
    await queue.delete(if_unused=False, if_empty=False)
    await exchange.delete()
    await pub.close()
    await con.close()


async def meshbus_group(url: str, count: int) -> None:
    payload = b"x" * 100
    subject = f"{space()}.data"
    async with (
        meshbus.connect(url) as pub,
        meshbus.connect(url) as con,
        con.subscribe(subject, group="g") as sub,
    ):
        consumer = asyncio.create_task(consume_acking(sub, count))
        chunk = [Outgoing(subject, payload)] * BATCH
        for _ in range(count // BATCH):
            await pub.publish_many(chunk)
        await asyncio.wait_for(consumer, 120)


async def faststream_group(url: str, count: int) -> None:
    fs = faststream_rabbit
    payload = b"x" * 100
    name = space()
    broker = fs.RabbitBroker(url, logger=None)
    exchange = fs.RabbitExchange(name, type=fs.ExchangeType.TOPIC)
    queue = fs.RabbitQueue(name, queue_type=fs.QueueType.QUORUM, routing_key="data")
    done = asyncio.Event()
    received = 0

    @broker.subscriber(queue, exchange, channel=fs.Channel(prefetch_count=256))
    async def on_msg(body: bytes) -> None:
        nonlocal received
        received += 1
        if received == count:
            done.set()

    await broker.start()
    try:
        for _ in range(count // BATCH):
            await asyncio.gather(
                *(
                    broker.publish(payload, exchange=exchange, routing_key="data", persist=True)
                    for _ in range(BATCH)
                )
            )
        await asyncio.wait_for(done.wait(), 120)
    finally:
        await broker.stop()
    async with await aio_pika.connect(url) as conn:
        channel = await conn.channel()
        await channel.queue_delete(name)
        await channel.exchange_delete(name)


def test_rabbitmq_raw_confirmed_baseline(
    benchmark: object, run: Runner, server: RabbitMQServer
) -> None:
    """Raw aio-pika: persistent publishes, 256 confirms in flight -> quorum queue consumer."""
    benchmark.pedantic(  # type: ignore[attr-defined]
        lambda: run(lambda: raw_confirmed(server.url, COUNT)), rounds=3, warmup_rounds=1
    )
    record_throughput(benchmark, COUNT)


def test_rabbitmq_group(benchmark: object, run: Runner, server: RabbitMQServer) -> None:
    """meshbus group: publish_many of 256 (persistent, confirmed) -> member acking each."""
    benchmark.pedantic(  # type: ignore[attr-defined]
        lambda: run(lambda: meshbus_group(server.url, COUNT)), rounds=3, warmup_rounds=1
    )
    record_throughput(benchmark, COUNT)


def test_rabbitmq_faststream_group(benchmark: object, run: Runner, server: RabbitMQServer) -> None:
    """FastStream: persistent publishes, 256 confirms in flight -> quorum queue subscriber."""
    benchmark.pedantic(  # type: ignore[attr-defined]
        lambda: run(lambda: faststream_group(server.url, COUNT)), rounds=3, warmup_rounds=1
    )
    record_throughput(benchmark, COUNT)


async def raw_request(url: str, samples: list[float]) -> None:
    client, responder = await aio_pika.connect(url), await aio_pika.connect(url)
    cch, rch = await client.channel(), await responder.channel()
    name = space()
    requests = await rch.declare_queue(name, exclusive=True)

    async def respond(msg: aio_pika.abc.AbstractIncomingMessage) -> None:
        await rch.default_exchange.publish(
            aio_pika.Message(msg.body, correlation_id=msg.correlation_id),
            routing_key=msg.reply_to or "",
        )
        await msg.ack()

    await requests.consume(respond)
    replies = await cch.declare_queue(exclusive=True)
    waiting: dict[str, asyncio.Future[bytes]] = {}

    async def on_reply(msg: aio_pika.abc.AbstractIncomingMessage) -> None:
        future = waiting.pop(msg.correlation_id or "", None)
        if future is not None:
            future.set_result(msg.body)

    await replies.consume(on_reply, no_ack=True)
    payload = b"x" * 100
    loop = asyncio.get_running_loop()
    for i in range(ROUNDS):
        start = time.perf_counter()
        future: asyncio.Future[bytes] = loop.create_future()
        waiting[str(i)] = future
        await cch.default_exchange.publish(
            aio_pika.Message(payload, correlation_id=str(i), reply_to=replies.name),
            routing_key=name,
        )
        await asyncio.wait_for(future, 5)
        samples.append(time.perf_counter() - start)
    await client.close()
    await responder.close()


async def meshbus_request(url: str, samples: list[float]) -> None:
    async with meshbus.connect(url) as client, meshbus.connect(url) as server:
        await time_requests(client, server, f"{space()}.rpc", ROUNDS, samples)


def test_rabbitmq_raw_request_baseline(
    benchmark: object, run: Runner, server: RabbitMQServer
) -> None:
    """Raw aio-pika RPC: request queue, exclusive reply queue, correlation ids."""
    bench_round_trips(benchmark, run, lambda samples: raw_request(server.url, samples), ROUNDS)


def test_rabbitmq_request_reply(benchmark: object, run: Runner, server: RabbitMQServer) -> None:
    """meshbus request (a reply queue per connection) -> group member responding."""
    bench_round_trips(benchmark, run, lambda samples: meshbus_request(server.url, samples), ROUNDS)


async def faststream_request(url: str, samples: list[float]) -> None:
    fs = faststream_rabbit
    name = space()
    client, responder = fs.RabbitBroker(url, logger=None), fs.RabbitBroker(url, logger=None)

    @responder.subscriber(fs.RabbitQueue(name, exclusive=True))
    async def respond(body: bytes) -> bytes:
        return body

    await responder.start()
    await client.start()
    payload = b"x" * 100
    try:
        for _ in range(ROUNDS):
            start = time.perf_counter()
            await client.request(payload, name, timeout=5)
            samples.append(time.perf_counter() - start)
    finally:
        await client.stop()
        await responder.stop()


def test_rabbitmq_faststream_request(
    benchmark: object, run: Runner, server: RabbitMQServer
) -> None:
    """FastStream request() (direct reply-to) -> subscriber returning the body."""
    bench_round_trips(
        benchmark, run, lambda samples: faststream_request(server.url, samples), ROUNDS
    )
