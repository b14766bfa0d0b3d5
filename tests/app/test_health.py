"""Health as a platform reads it: an App is ready only while every channel is connected; a
broker stopped under it turns its channel to ``reconnecting`` and readiness off, and back when
the broker returns (NATS, RabbitMQ); a direct dialler with no peer left is ``reconnecting``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

import meshbus
from meshbus.app import App
from meshbus.health import redact
from meshbus.testing.brokers import NatsServer, RabbitMQServer
from meshbus.testing.pytest_plugin import BrokerFactory


async def _until(check: Callable[[], bool], timeout: float = 60) -> None:
    async with asyncio.timeout(timeout):
        while not check():  # noqa: ASYNC110 -- the state is the broker client's own
            await asyncio.sleep(0.05)


def _app() -> App:
    app = App("health")

    @app.handle("h.x")
    async def handler(msg: meshbus.Message) -> None: ...

    return app


@pytest.mark.asyncio
async def test_nats_restart_turns_readiness_off_and_on(
    nats_server_factory: BrokerFactory[NatsServer],
) -> None:
    server = nats_server_factory()
    app = _app()
    await app.start(url=server.url + "?reconnect_wait=0.2")
    try:
        assert app.health().ready
        await asyncio.to_thread(server.kill)
        await _until(lambda: app.health().channels[0].state == "reconnecting")
        assert not app.health().ready
        await asyncio.to_thread(server.start)
        await _until(lambda: app.health().ready)
    finally:
        await app.stop()
    assert app.health().channels[0].state == "closed"


@pytest.mark.asyncio
async def test_rabbitmq_restart_turns_readiness_off_and_on(
    rabbitmq_server_factory: BrokerFactory[RabbitMQServer],
) -> None:
    server = rabbitmq_server_factory()
    app = _app()
    await app.start(url=server.url)
    try:
        assert app.health().ready
        assert "guest:***@" in app.health().channels[0].url  # the password is not shown
        await asyncio.to_thread(server.stop)
        await _until(lambda: app.health().channels[0].state == "reconnecting")
        assert not app.health().ready
        await asyncio.to_thread(server.start)
        await _until(lambda: app.health().ready, timeout=120)
    finally:
        await app.stop()


@pytest.mark.asyncio
async def test_a_dialler_with_no_peer_left_is_reconnecting() -> None:
    async with meshbus.connect("memory://health-peer", listen="tcp://127.0.0.1:0") as server:
        port = server._listener.port  # type: ignore[union-attr]
        url = f"tcp://127.0.0.1:{port}?reconnect_max=0.2"
        async with meshbus.connect(url) as client:
            assert [c.state for c in client.health()] == ["connected"]
            await server.close()
            await _until(lambda: client.health()[0].state == "reconnecting", 10)
    assert [c.state for c in client.health()] == ["closed"]


def test_urls_in_health_reports_hide_secrets() -> None:
    assert redact("amqp://user:s3cret@host:5672/vh") == "amqp://user:***@host:5672/vh"
    assert redact("tcp://a:7000?token=s3cret&credit=8") == "tcp://a:7000?token=***&credit=8"
    assert redact("nats://host:4222") == "nats://host:4222"
