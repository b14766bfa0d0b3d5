"""pytest fixtures that run real brokers as private local processes.

Enable it in the rootdir ``conftest.py`` with ``pytest_plugins = ["meshbus.testing.pytest_plugin"]``
(or ``-p meshbus.testing.pytest_plugin``). Fixtures:

- ``nats_server``, ``kafka_broker``, ``rabbitmq_server``: one broker per test session, started on
  first use. Tests share it, so they must not kill, pause or restart it.
- ``nats_server_factory``, ``kafka_broker_factory``, ``rabbitmq_server_factory``: each call starts
  a fresh private broker (keyword arguments go to its constructor), stopped at the end of the
  test: for tests that kill, restart or pause a broker.

A missing broker binary skips the test, or fails it under ``MESHBUS_REQUIRE_INFRA=1``.

The event loop: ``MESHBUS_LOOP=uvloop`` in the environment runs every pytest-asyncio test (and
its async fixtures) on a uvloop loop, through pytest-asyncio's ``pytest_asyncio_loop_factories``
hook; ``asyncio`` (the default) leaves pytest-asyncio's own loop alone. Asking for uvloop where
it is not installed, or for a loop this does not know, stops the run with a usage error instead
of testing another loop than the one asked for. The loop in use is printed in the run's header.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

import pytest

from meshbus.testing.brokers import BrokerProcess, NatsServer, RabbitMQServer, TansuBroker

__all__ = [
    "LOOP_ENV",
    "BrokerFactory",
    "LoopChoice",
    "kafka_broker",
    "kafka_broker_factory",
    "loop_choice",
    "nats_server",
    "nats_server_factory",
    "pytest_configure",
    "pytest_report_header",
    "rabbitmq_server",
    "rabbitmq_server_factory",
]

B = TypeVar("B", bound=BrokerProcess)

LOOP_ENV = "MESHBUS_LOOP"
"""The environment variable that picks the event loop the tests run on: asyncio or uvloop."""

_LOOPS = ("asyncio", "uvloop")


class LoopChoice:
    """An event loop other than asyncio's own, by ``name`` and the ``factory`` that makes one.

    Registered as a pytest plugin, it answers pytest-asyncio's ``pytest_asyncio_loop_factories``
    hook with that one factory, so every asyncio test runs on it with its name unchanged."""

    def __init__(self, name: str, factory: Callable[[], asyncio.AbstractEventLoop]) -> None:
        self.name = name
        self.factory = factory

    def pytest_asyncio_loop_factories(
        self, config: pytest.Config, item: pytest.Item
    ) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
        return {self.name: self.factory}


def loop_choice(environ: Mapping[str, str] = os.environ) -> LoopChoice | None:
    """The loop ``MESHBUS_LOOP`` in ``environ`` names, None for asyncio's own (the default);
    ``pytest.UsageError`` for a name this does not know, or for uvloop where it cannot be
    imported."""
    name = environ.get(LOOP_ENV, "").strip().lower() or "asyncio"
    if name == "asyncio":
        return None
    if name not in _LOOPS:
        raise pytest.UsageError(f"{LOOP_ENV}={name!r}: expected one of {', '.join(_LOOPS)}")
    try:
        import uvloop
    except ImportError as exc:
        raise pytest.UsageError(
            f"{LOOP_ENV}=uvloop, but uvloop cannot be imported ({exc}): "
            "pip install 'meshbus[uvloop]', or unset the variable to test on asyncio's loop"
        ) from exc

    class Loop(uvloop.Loop):
        """uvloop's loop, closed with its warnings held until the close is done.

        uvloop warns of a transport still open (a ResourceWarning) from inside ``close``,
        before it closes the handle; where warnings are errors (as in this project's tests)
        the warning is raised there instead, the handle is never closed, and ``close`` waits
        for it forever, past any test timeout. So a test that leaks a socket would hang the
        run. Held, the warnings are given again once the loop is closed, and fail the test."""

        def close(self) -> None:
            with warnings.catch_warnings(record=True) as held:
                warnings.simplefilter("always")
                super().close()
            for w in held:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)

    return LoopChoice(name, Loop)


_LOOP_PLUGIN = "meshbus-loop"


def pytest_configure(config: pytest.Config) -> None:
    """Run the asyncio tests on the loop ``MESHBUS_LOOP`` names (see the module docstring)."""
    choice = loop_choice()
    if choice is not None and not config.pluginmanager.has_plugin(_LOOP_PLUGIN):
        config.pluginmanager.register(choice, _LOOP_PLUGIN)


def pytest_report_header(config: pytest.Config) -> str:
    choice = config.pluginmanager.get_plugin(_LOOP_PLUGIN)
    name = choice.name if isinstance(choice, LoopChoice) else "asyncio"
    return f"meshbus event loop: {name} ({LOOP_ENV})"


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
