"""RabbitMQ as a private node, from Debian's ``rabbitmq-server``."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from meshbus.testing._infra import missing
from meshbus.testing.brokers._process import (
    BrokerError,
    BrokerProcess,
    _Child,
    _free_ports,
    _recv_exactly,
)


class RabbitMQServer(BrokerProcess):
    """RabbitMQ (Debian ``rabbitmq-server``) as a private node, on loopback only.

    The node is ``mb<port>@localhost``, with its own Erlang cookie (HOME is the temp dir) and
    its own Erlang port mapper (``epmd``) on a private port, started and stopped with it, so no
    shared epmd is used or killed. Takes a few seconds to start. Queues survive :meth:`restart`
    and (durable ones) :meth:`kill`.
    """

    name = "rabbitmq"
    scheme = "amqp"

    def __init__(
        self,
        *,
        port: int | None = None,
        bin_dir: str | os.PathLike[str] = "/usr/lib/rabbitmq/bin",
        start_timeout: float = 90.0,
        stop_timeout: float = 30.0,
        config: Mapping[str, str] | None = None,
    ) -> None:
        """Prepare a node; ``bin_dir`` holds ``rabbitmq-server`` and ``rabbitmqctl``;
        ``config`` goes into its ``rabbitmq.conf`` (``{"listeners.ssl.default": "..."}``)."""
        super().__init__(port=port, start_timeout=start_timeout, stop_timeout=stop_timeout)
        self.bin_dir = Path(bin_dir)
        self.config = dict(config or {})
        server, epmd = self.bin_dir / "rabbitmq-server", shutil.which("epmd")
        if not os.access(server, os.X_OK) or epmd is None:
            missing(
                f"RabbitMQ ({server})",
                "apt-get install rabbitmq-server (`make test` installs it via "
                "scripts/install-system-deps.sh)",
            )
        self.epmd_binary = epmd
        self.dist_port, self.epmd_port = _free_ports(2, avoid={self.port})
        self.node = f"mb{self.port}@localhost"
        self._epmd: _Child | None = None

    @property
    def url(self) -> str:
        """``amqp://guest:guest@127.0.0.1:PORT/`` (guest may log in from loopback)."""
        return f"amqp://guest:guest@{self.host}:{self.port}/"

    def rabbitmqctl(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run ``rabbitmqctl -n NODE ARGS...`` against this node; output is captured."""
        return subprocess.run(
            [str(self.bin_dir / "rabbitmqctl"), "-n", self.node, *args],
            env=self._env(), capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip

    def flush_metadata(self) -> None:
        """Write the node's open ``dets`` tables to disk, as RabbitMQ's own autosave does
        every 3 minutes.

        RabbitMQ 3.10 keeps the registry of its quorum queues' Raft members (``ra_directory``)
        in ``dets``. A node killed (:meth:`kill`) before the next autosave loses the
        registration of quorum queues declared since: after the restart such a queue has no
        leader and ``basic.consume`` on it hangs. Queues that lived through an autosave are
        recovered, messages included. Call this after declaring quorum queues and before
        :meth:`kill` to test a crash of a node whose queues are minutes old, without waiting
        for the autosave.
        """
        done = self.rabbitmqctl("eval", "[dets:sync(T) || T <- dets:all()].")
        if done.returncode != 0:
            raise BrokerError(f"{self.node} did not flush its dets tables: {done.stderr.strip()}")

    def _prepare(self) -> None:
        (self.data_dir / "enabled_plugins").write_text("[].\n")
        (self.data_dir / "rabbitmq-env.conf").write_text("")
        lines = "".join(f"{key} = {value}\n" for key, value in self.config.items())
        (self.data_dir / "rabbitmq.conf").write_text(lines)

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        loopback = "-kernel inet_dist_use_interface {127,0,0,1}"
        d = self.data_dir
        env.update({
            "HOME": str(d), "ERL_EPMD_PORT": str(self.epmd_port), "ERL_EPMD_ADDRESS": self.host,
            "RABBITMQ_NODENAME": self.node, "RABBITMQ_NODE_IP_ADDRESS": self.host,
            "RABBITMQ_NODE_PORT": str(self.port), "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(d / "mnesia"), "RABBITMQ_LOG_BASE": str(d / "log"),
            "RABBITMQ_LOGS": "-", "RABBITMQ_PID_FILE": str(d / "pid"),
            "RABBITMQ_FEATURE_FLAGS_FILE": str(d / "feature_flags"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(d / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq.conf"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": loopback, "RABBITMQ_CTL_ERL_ARGS": loopback,
        })  # fmt: skip
        return env

    def _command(self) -> list[str]:
        return [str(self.bin_dir / "rabbitmq-server")]

    def _launch(self) -> None:
        if self._epmd is None or self._epmd.exited():
            self._start_epmd()
        super()._launch()

    def _start_epmd(self) -> None:
        """Our own epmd, in the foreground, so the node does not daemonize a shared one."""
        self._epmd = _Child([self.epmd_binary], self._env(), self.data_dir, self.log_path)
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline and not self._epmd.exited():
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.epmd_port), timeout=1.0),
            ):
                return
            time.sleep(0.02)
        self._fail(f"could not start its epmd on port {self.epmd_port}")

    def _probe(self) -> bool:
        """An AMQP handshake gets Connection.Start, then ``rabbitmqctl await_startup`` agrees."""
        with socket.create_connection((self.host, self.port), timeout=1.0) as sock:
            sock.sendall(b"AMQP\x00\x00\x09\x01")
            frame_type, channel, _size, class_id, method_id = struct.unpack(
                ">BHIHH", _recv_exactly(sock, 11)
            )
        if (frame_type, channel, class_id, method_id) != (1, 0, 10, 10):
            return False
        try:
            return self.rabbitmqctl("await_startup", "--timeout", "30").returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def stop(self, timeout: float | None = None) -> None:
        """Stop the node gracefully (SIGTERM), then its epmd; delete the temp dir."""
        self._shutdown(graceful=True, timeout=timeout)
        epmd, self._epmd = self._epmd, None
        if epmd is not None:
            epmd.shutdown(timeout=5.0)
        super().stop(timeout)
