"""Real brokers as private local processes, for tests.

Each broker runs on free ports of 127.0.0.1, with its data and log in a private temp dir, in its
own process group: only processes started here are ever signalled, by the pid/pgid recorded at
start. Everything is synchronous so it fits session-scoped pytest fixtures::

    with NatsServer() as nats:          # started and ready
        connect(nats.url)
        nats.kill(); nats.restart()     # same port, same data dir

A missing binary skips the test, or fails it under ``MESHBUS_REQUIRE_INFRA=1`` (see
:func:`meshbus.testing._infra.missing`).
"""

from meshbus.testing.brokers._process import (
    BrokerError,
    BrokerNotRunningError,
    BrokerProcess,
    BrokerStartError,
    free_port,
)
from meshbus.testing.brokers.nats import NatsServer
from meshbus.testing.brokers.rabbitmq import RabbitMQServer
from meshbus.testing.brokers.tansu import TansuBroker

__all__ = [
    "BrokerError",
    "BrokerNotRunningError",
    "BrokerProcess",
    "BrokerStartError",
    "NatsServer",
    "RabbitMQServer",
    "TansuBroker",
    "free_port",
]
