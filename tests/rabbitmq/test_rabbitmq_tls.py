"""amqps://: TLS to a RabbitMQ node with a TLS listener and a self-signed certificate (made
with the openssl command line for the test)."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import uuid
from pathlib import Path

import pytest

import meshbus
from meshbus.errors import ConnectFailed
from meshbus.testing.brokers import RabbitMQServer, free_port
from meshbus.testing.pytest_plugin import BrokerFactory


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    key.chmod(0o644)  # the broker runs as this user, but keep it readable
    return cert, key


@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_amqps_with_a_tls_context(
    rabbitmq_server_factory: BrokerFactory[RabbitMQServer], tmp_path: Path
) -> None:
    cert, key = self_signed(tmp_path)
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
