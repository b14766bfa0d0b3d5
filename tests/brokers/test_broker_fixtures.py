"""The real-broker fixtures of meshbus.testing, exercised with each broker's own client."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import uuid
from collections.abc import Callable
from pathlib import Path

import aio_pika
import nats
import nats.errors
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from meshbus.testing import brokers
from meshbus.testing._infra import REQUIRE_INFRA_ENV
from meshbus.testing.brokers import (
    BrokerNotRunningError,
    BrokerProcess,
    BrokerStartError,
    NatsServer,
    RabbitMQServer,
    TansuBroker,
    free_port,
)
from meshbus.testing.pytest_plugin import BrokerFactory


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_free_port_can_be_bound() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


# -- NATS -------------------------------------------------------------------------------------


async def _quiet(error: Exception) -> None:
    """nats-py error callback: the disconnects these tests cause are expected."""


@pytest.mark.asyncio
async def test_nats_publish_subscribe_and_jetstream(nats_server: NatsServer) -> None:
    assert nats_server.url == f"nats://127.0.0.1:{nats_server.port}"
    nc = await nats.connect(nats_server.url, allow_reconnect=False)
    try:
        sub = await nc.subscribe("greet.*")
        await nc.publish("greet.world", b"hello")
        assert (await sub.next_msg(timeout=5)).data == b"hello"

        js = nc.jetstream()
        stream = unique("FIXTURES")
        await js.add_stream(name=stream, subjects=[f"{stream}.>"])
        ack = await js.publish(f"{stream}.one", b"1")
        assert (ack.stream, ack.seq) == (stream, 1)
    finally:
        await nc.close()


@pytest.mark.asyncio
async def test_nats_max_payload(nats_server_factory: BrokerFactory[NatsServer]) -> None:
    server = nats_server_factory(max_payload=1024)
    nc = await nats.connect(server.url, allow_reconnect=False)
    try:
        assert nc.max_payload == 1024
        await nc.publish("small", b"x" * 1024)
        with pytest.raises(nats.errors.MaxPayloadError):
            await nc.publish("big", b"x" * 1025)
    finally:
        await nc.close()


@pytest.mark.asyncio
async def test_nats_kill_restart_pause_resume(
    nats_server_factory: BrokerFactory[NatsServer],
) -> None:
    server = nats_server_factory()
    reconnected = asyncio.Event()

    async def on_reconnect() -> None:
        reconnected.set()

    nc = await nats.connect(
        server.url,
        reconnected_cb=on_reconnect,
        error_cb=_quiet,
        reconnect_time_wait=0.1,
        max_reconnect_attempts=-1,
    )
    try:
        js = nc.jetstream()
        stream = unique("KEEP")
        await js.add_stream(name=stream, subjects=[f"{stream}.>"])
        await js.publish(f"{stream}.a", b"kept")

        port, data_dir = server.port, server.data_dir
        server.kill()
        assert not server.running
        server.restart()
        assert (server.port, server.data_dir) == (port, data_dir)
        await asyncio.wait_for(reconnected.wait(), 15)  # same port: the client finds it again
        assert (await js.stream_info(stream)).state.messages == 1  # JetStream file store kept

        sub = await nc.subscribe(f"{stream}.live")
        await nc.flush()
        server.pause()
        await nc.publish(f"{stream}.live", b"late")
        with pytest.raises(nats.errors.TimeoutError):  # a paused server delivers nothing
            await sub.next_msg(timeout=0.5)
        server.resume()
        assert (await sub.next_msg(timeout=5)).data == b"late"
    finally:
        await nc.close()


# -- Kafka protocol (tansu) ---------------------------------------------------------------------


async def _create_topic(bootstrap: str, topic: str, partitions: int = 1) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, replication_factor=1)])
    finally:
        await admin.close()


async def _topics(bootstrap: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return list(await admin.list_topics())
    finally:
        await admin.close()


async def _produce(bootstrap: str, topic: str, value: bytes, key: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


def _kafka_answers(broker: TansuBroker, timeout: float) -> bool:
    """Does the broker answer a Kafka ApiVersions request within ``timeout`` seconds?"""
    body = struct.pack(">hhih", 18, 0, 7, 4) + b"test"
    with socket.create_connection((broker.host, broker.port), timeout=timeout) as sock:
        sock.sendall(struct.pack(">i", len(body)) + body)
        try:
            return len(sock.recv(10)) > 0
        except TimeoutError:
            return False


@pytest.mark.asyncio
async def test_kafka_create_topic_produce_consume(kafka_broker: TansuBroker) -> None:
    assert kafka_broker.url == f"kafka://127.0.0.1:{kafka_broker.port}"
    bootstrap, topic = kafka_broker.bootstrap_servers, unique("fixtures")
    await _create_topic(bootstrap, topic, partitions=3)
    await _produce(bootstrap, topic, b"hello", key=b"k")

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=unique("group"),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        message = await asyncio.wait_for(consumer.getone(), 30)
        assert (message.key, message.value) == (b"k", b"hello")
        await consumer.commit()
    finally:
        await consumer.stop()


@pytest.mark.asyncio
async def test_kafka_kill_restart_pause_resume(
    kafka_broker_factory: BrokerFactory[TansuBroker],
) -> None:
    broker = kafka_broker_factory()
    bootstrap, topic = broker.bootstrap_servers, unique("lost")
    await _create_topic(bootstrap, topic)

    broker.kill()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((broker.host, broker.port), timeout=1).close()
    broker.restart()
    assert broker.bootstrap_servers == bootstrap
    assert topic not in await _topics(bootstrap)  # memory storage: a restart loses topics
    await _create_topic(bootstrap, topic)
    await _produce(bootstrap, topic, b"again", key=b"k")

    broker.pause()
    assert not _kafka_answers(broker, timeout=0.5)
    broker.resume()
    assert _kafka_answers(broker, timeout=5)


# -- RabbitMQ -------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_rabbitmq_declare_publish_get(rabbitmq_server: RabbitMQServer) -> None:
    assert rabbitmq_server.url == f"amqp://guest:guest@127.0.0.1:{rabbitmq_server.port}/"
    name = unique("fixtures")
    async with await aio_pika.connect(rabbitmq_server.url) as connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(name, auto_delete=True)
        await channel.default_exchange.publish(aio_pika.Message(b"hello"), routing_key=name)
        message = await queue.get(timeout=5)
        await message.ack()
        assert message.body == b"hello"


@pytest.mark.asyncio
async def test_rabbitmq_kill_restart_pause_resume(
    rabbitmq_server_factory: BrokerFactory[RabbitMQServer],
) -> None:
    """A classic and a quorum queue keep their confirmed messages through a SIGKILL (the quorum
    queue's registration flushed first, see ``flush_metadata``)."""
    server = rabbitmq_server_factory()
    name = unique("durable")
    quorum = {"x-queue-type": "quorum"}
    async with await aio_pika.connect(server.url) as connection:
        channel = await connection.channel()  # publisher confirms: acked means on disk
        await channel.declare_queue(name, durable=True)
        await channel.declare_queue(f"{name}.q", durable=True, arguments=quorum)
        server.flush_metadata()
        persistent = aio_pika.Message(b"kept", delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        await channel.default_exchange.publish(persistent, routing_key=name)
        await channel.default_exchange.publish(persistent, routing_key=f"{name}.q")

    server.kill()
    assert not server.running
    server.restart()
    async with await aio_pika.connect(server.url) as connection:
        channel = await connection.channel()
        for queue_name, arguments in ((name, None), (f"{name}.q", quorum)):
            queue = await channel.declare_queue(queue_name, durable=True, arguments=arguments)
            message = await queue.get(timeout=5)
            await message.ack()
            assert message.body == b"kept"

    server.pause()
    with pytest.raises((TimeoutError, aio_pika.exceptions.AMQPConnectionError)):
        await aio_pika.connect(server.url, timeout=1)
    server.resume()
    async with await aio_pika.connect(server.url) as connection:
        assert not connection.is_closed

    listed = server.rabbitmqctl("list_queues", "name", "--quiet")
    assert name in listed.stdout


# -- process management, missing binaries ---------------------------------------------------------


def test_start_failure_reports_the_log_tail_and_leaves_nothing_behind() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        server = NatsServer(port=busy.getsockname()[1])
        with pytest.raises(BrokerStartError, match="address already in use"):
            server.start()
    assert server.pid is None
    assert not server.running
    with pytest.raises(BrokerNotRunningError, match="not been started"):
        _ = server.data_dir


def test_context_manager_stops_the_process_and_removes_the_temp_dir() -> None:
    with NatsServer() as server:
        assert server.running
        pid, data_dir = server.pid, server.data_dir
        assert pid is not None
        assert data_dir.is_dir()
        assert "Server is ready" in server.log_tail()
    assert not server.running
    assert not data_dir.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_paused_broker_is_resumed_to_shut_down_gracefully(
    nats_server_factory: BrokerFactory[NatsServer],
) -> None:
    server = nats_server_factory(stop_timeout=60)
    server.pause()
    server.restart()  # keeps the log, unlike stop()
    log = server.log_path.read_text()
    assert 'Trapped "terminated" signal' in log  # SIGTERM handled: it got SIGCONT first
    assert "Server Exiting" in log
    with pytest.raises(BrokerNotRunningError):
        NatsServer().pause()


def _hide_nats(monkeypatch: pytest.MonkeyPatch, empty: Path) -> Callable[[], BrokerProcess]:
    monkeypatch.setattr(brokers.nats, "_venv_bin_dirs", lambda: [empty])
    monkeypatch.setenv("PATH", str(empty))
    return NatsServer


def _hide_tansu(monkeypatch: pytest.MonkeyPatch, empty: Path) -> Callable[[], BrokerProcess]:
    monkeypatch.setenv("CALF_TANSU_BIN", str(empty / "tansu"))
    monkeypatch.setenv("PATH", str(empty))
    return TansuBroker


def _hide_rabbitmq(monkeypatch: pytest.MonkeyPatch, empty: Path) -> Callable[[], BrokerProcess]:
    return lambda: RabbitMQServer(bin_dir=empty)


HIDE = pytest.mark.parametrize(
    "hide", [_hide_nats, _hide_tansu, _hide_rabbitmq], ids=["nats", "tansu", "rabbitmq"]
)


@HIDE
def test_missing_binary_skips_locally(
    hide: Callable[[pytest.MonkeyPatch, Path], Callable[[], BrokerProcess]],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.delenv(REQUIRE_INFRA_ENV, raising=False)
    make = hide(monkeypatch, tmp_path)
    with pytest.raises(pytest.skip.Exception, match=r"not available: (pip|apt-get) install"):
        make()


@HIDE
def test_missing_binary_fails_under_the_ci_switch(
    hide: Callable[[pytest.MonkeyPatch, Path], Callable[[], BrokerProcess]],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv(REQUIRE_INFRA_ENV, "1")
    make = hide(monkeypatch, tmp_path)
    with pytest.raises(pytest.fail.Exception, match=REQUIRE_INFRA_ENV):
        make()
