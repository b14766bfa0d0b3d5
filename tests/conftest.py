"""What several tiers share: the real-broker fixtures of ``meshbus.testing.pytest_plugin``
(conformance, brokers, nats, kafka, rabbitmq), its event loop switch (``MESHBUS_LOOP=uvloop``
runs every asyncio test on uvloop) and the Docker engine (the doctor's engine checks and
tests/e2e).

pytest accepts ``pytest_plugins`` only in the rootdir conftest, so the broker fixtures are
imported here instead, once for every tier."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshbus.testing._infra import missing
from meshbus.testing.pytest_plugin import (
    kafka_broker,
    kafka_broker_factory,
    nats_server,
    nats_server_factory,
    pytest_configure,
    pytest_report_header,
    rabbitmq_server,
    rabbitmq_server_factory,
)

__all__ = [
    "certificate",
    "docker_engine",
    "kafka_broker",
    "kafka_broker_factory",
    "nats_server",
    "nats_server_factory",
    "pytest_configure",
    "pytest_report_header",
    "rabbitmq_server",
    "rabbitmq_server_factory",
    "script_env",
]

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (readable, for a broker process),
    made by the openssl command: missing, it skips (fails under ``MESHBUS_REQUIRE_INFRA=1``)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        missing("the openssl command", "apt-get install openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    key.chmod(0o644)
    return cert, key


@pytest.fixture(scope="session")
def script_env() -> dict[str, str]:
    """The environment for the repository's scripts: this Python as ``PY``, its folder first
    on ``PATH`` (the compose binary, nats-server)."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return {**os.environ, "PY": sys.executable, "PATH": path}


@pytest.fixture(scope="session")
def docker_engine(script_env: dict[str, str]) -> Iterator[str]:
    """A running Docker engine: started with ``scripts/docker-engine.sh`` when it is installed
    but not running, and stopped at the end of the session if this started it. Missing, it
    skips (fails under ``MESHBUS_REQUIRE_INFRA=1``)."""
    if shutil.which("dockerd") is None and shutil.which("docker") is None:
        missing("the Docker engine", "apt-get install docker.io (make system-deps does it)")
    started = time.monotonic()
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "docker-engine.sh"), "start"],
        capture_output=True,
        text=True,
        env=script_env,
        check=False,
    )
    if done.returncode != 0:
        missing("the Docker engine", done.stderr.strip() or done.stdout.strip())
    print(
        f"\n[docker] engine {done.stdout.strip()} ({time.monotonic() - started:.1f} s)",
        file=sys.stderr,
    )
    try:
        yield done.stdout.strip()
    finally:
        if done.stdout.startswith("started"):
            subprocess.run(
                ["bash", str(ROOT / "scripts" / "docker-engine.sh"), "stop"],
                env=script_env,
                check=False,
            )
