"""amqps://: TLS to a RabbitMQ node with a TLS listener and a self-signed certificate (made
with the openssl command line for the test: the ``certificate`` fixture of tests/conftest.py)."""

from __future__ import annotations

import ssl
import uuid
from pathlib import Path

import pytest

import meshbus
from meshbus.errors import ConnectFailed
from meshbus.testing.brokers import RabbitMQServer, free_port
from meshbus.testing.pytest_plugin import BrokerFactory


@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_amqps_with_a_tls_context(
    rabbitmq_server_factory: BrokerFactory[RabbitMQServer], certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    tls_port = free_port()
    rabbitmq_server_factory(
        config={
            "listeners.ssl.default": f"127.0.0.1:{tls_port}",
            "ssl_options.cacertfile": str(cert),
            "ssl_options.certfile": str(cert),
            "ssl_options.keyfile": str(key),
            "ssl_options.verify": "verify_none",
            "ssl_options.fail_if_no_peer_cert": "false",
        }
    )
    url = f"amqps://guest:guest@127.0.0.1:{tls_port}/"
    trusting = ssl.create_default_context(cafile=str(cert))
    subject = f"t{uuid.uuid4().hex[:10]}.x"
    async with (
        meshbus.connect(url, options={"amqps": {"tls": trusting}}) as bus,
        bus.subscribe(subject, group="g") as sub,
    ):
        await bus.publish(subject, b"over tls")
        msg = await anext(sub)
        await msg.ack()
        assert msg.data == b"over tls"

    # The system's trust store does not know the self-signed certificate.
    with pytest.raises(ConnectFailed):
        await meshbus.connect(f"{url}?connect_timeout=5", options={"amqps": {}})
