"""pytest fixtures that run real brokers as private local processes.

Enable it in the rootdir ``conftest.py`` with ``pytest_plugins = ["meshbus.testing.pytest_plugin"]``
(or ``-p meshbus.testing.pytest_plugin``). Fixtures:

- ``nats_server``, ``kafka_broker``, ``rabbitmq_server``: one broker per test session, started on
  first use. Tests share it, so they must not kill, pause or restart it.
- ``nats_server_factory``, ``kafka_broker_factory``, ``rabbitmq_server_factory``: each call starts
  a fresh private broker (keyword arguments go to its constructor), stopped at the end of the
  test: for tests that kill, restart or pause a broker.

A missing broker binary skips the test, or fails it under ``MESHBUS_REQUIRE_INFRA=1``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

import pytest

from meshbus.testing.brokers import BrokerProcess, NatsServer, RabbitMQServer, TansuBroker

__all__ = [
    "BrokerFactory",
    "kafka_broker",
    "kafka_broker_factory",
    "nats_server",
    "nats_server_factory",
    "rabbitmq_server",
    "rabbitmq_server_factory",
]

B = TypeVar("B", bound=BrokerProcess)


class BrokerFactory(Generic[B]):
    """Starts private brokers on demand and stops all of them in :meth:`close`."""

    def __init__(self, make: Callable[..., B]) -> None:
        """``make(**options)`` builds (not starts) one broker."""
        self._make = make
        self.started: list[B] = []

    def __call__(self, **options: Any) -> B:
        """Start a new broker, ready to use; ``options`` go to its constructor."""
        broker = self._make(**options)
        broker.start()
        self.started.append(broker)
        return broker

    def close(self) -> None:
        """Stop every broker this factory started (even ones a test killed or paused)."""
        with contextlib.ExitStack() as stack:  # stops them all even if one stop raises
            for broker in self.started:
                stack.callback(broker.stop)
            self.started.clear()


def _session_broker(make: Callable[[], B]) -> Iterator[B]:
    with make() as broker:
        yield broker


def _factory(make: Callable[..., B]) -> Iterator[BrokerFactory[B]]:
    factory = BrokerFactory(make)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture(scope="session")
def nats_server() -> Iterator[NatsServer]:
    """A NATS server with JetStream, shared by the whole test session."""
    yield from _session_broker(NatsServer)


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[TansuBroker]:
    """A Kafka-protocol broker (tansu, memory storage), shared by the whole test session."""
    yield from _session_broker(TansuBroker)


@pytest.fixture(scope="session")
def rabbitmq_server() -> Iterator[RabbitMQServer]:
    """A RabbitMQ node, shared by the whole test session."""
    yield from _session_broker(RabbitMQServer)


@pytest.fixture
def nats_server_factory() -> Iterator[BrokerFactory[NatsServer]]:
    """Call it to start a private NATS server (e.g. ``max_payload=...``), stopped after the test."""
    yield from _factory(NatsServer)


@pytest.fixture
def kafka_broker_factory() -> Iterator[BrokerFactory[TansuBroker]]:
    """Call it to start a private Kafka-protocol broker, stopped after the test."""
    yield from _factory(TansuBroker)


@pytest.fixture
def rabbitmq_server_factory() -> Iterator[BrokerFactory[RabbitMQServer]]:
    """Call it to start a private RabbitMQ node, stopped after the test."""
    yield from _factory(RabbitMQServer)
