"""Broker processes: ports, process groups, start/stop/kill/restart/pause, logs."""

from __future__ import annotations

import atexit
import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Collection, Sequence
from pathlib import Path
from types import TracebackType
from typing import ClassVar, NoReturn, Self

LOCALHOST = "127.0.0.1"


def free_port() -> int:
    """Return a TCP port of 127.0.0.1 that nothing listens on right now."""
    return _free_ports(1)[0]


def _free_ports(count: int, avoid: Collection[int] = ()) -> list[int]:
    """Return ``count`` distinct free ports not in ``avoid`` (held open together, so distinct)."""
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        while len(ports) < count:
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((LOCALHOST, 0))
            port = int(sock.getsockname()[1])
            if port not in avoid:
                ports.append(port)
        return ports


class BrokerError(RuntimeError):
    """Base class of the errors raised here."""


class BrokerStartError(BrokerError):
    """A broker exited or did not become ready in time; the message ends with its log tail."""


class BrokerNotRunningError(BrokerError):
    """The operation needs a started (or running) broker."""


class _Child:
    """One started process, leader of its own process group (its pid is the pgid).

    The leader is reaped only after the last signal to its group: while it is an unreaped
    zombie its pid, hence the pgid, cannot be reused by an unrelated process.
    """

    def __init__(self, argv: Sequence[str], env: dict[str, str], cwd: Path, log: Path) -> None:
        with log.open("ab") as out:
            out.write(f"--- meshbus: starting {shlex.join(argv)}\n".encode())
            out.flush()
            self.popen = subprocess.Popen(
                list(argv), env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self.pid = self.popen.pid

    def exited(self) -> bool:
        """True once the leader has exited (without reaping it)."""
        return self.exit_status() is not None

    def exit_status(self) -> int | None:
        """The leader's exit status (``-N`` for signal N) once it exited, else None; no reaping."""
        if self.popen.returncode is not None:
            return self.popen.returncode
        flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
        result = os.waitid(os.P_PID, self.pid, flags)
        if result is None:
            return None
        killed = result.si_code in (os.CLD_KILLED, os.CLD_DUMPED)
        return -result.si_status if killed else result.si_status

    def signal_group(self, signum: int) -> None:
        """Send ``signum`` to the whole process group, unless the leader was already reaped."""
        if self.popen.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signum)

    def wait_stopped(self, timeout: float = 5.0) -> bool:
        """Wait until every thread of the leader is stopped (SIGSTOP is delivered
        asynchronously: a thread running on another core goes on for a moment)."""
        deadline = time.monotonic() + timeout
        tasks = Path(f"/proc/{self.pid}/task")
        while time.monotonic() < deadline:
            try:
                states = [
                    (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
                    for task in tasks.iterdir()
                ]
            except (FileNotFoundError, ProcessLookupError, IndexError):
                return False  # gone, or not a Linux /proc: nothing more to wait for
            if states and all(state in {"T", "t"} for state in states):
                return True
            time.sleep(0.005)
        return False

    def wait_exited(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the leader to exit; True if it did."""
        deadline = time.monotonic() + timeout
        while not self.exited():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    def shutdown(self, timeout: float, graceful: bool = True) -> None:
        """SIGTERM the leader (if ``graceful``), SIGKILL what is left of the group, reap."""
        if graceful and not self.exited():
            self.signal_group(signal.SIGCONT)  # a paused process cannot handle SIGTERM
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            self.wait_exited(timeout)
        self.signal_group(signal.SIGKILL)
        self.popen.wait()


_live: set[BrokerProcess] = set()  # started and not stopped yet


@atexit.register
def _kill_leftovers() -> None:
    """Safety net: never leave a broker running when the interpreter exits."""
    for broker in list(_live):
        with contextlib.suppress(Exception):
            broker.stop(timeout=0)


class BrokerProcess:
    """A broker run as a private local process: start, stop, kill, restart, pause, resume.

    Subclasses give the command line (:meth:`_command`), the readiness probe (:meth:`_probe`)
    and optionally the environment and config files (:meth:`_env`, :meth:`_prepare`).
    """

    #: Short name used in messages and temp dir names.
    name: ClassVar[str] = "broker"
    #: URL scheme of :attr:`url`.
    scheme: ClassVar[str] = "tcp"

    def __init__(
        self, *, port: int | None = None, start_timeout: float = 30.0, stop_timeout: float = 10.0
    ) -> None:
        """Prepare (not start) a broker on ``port`` (default: a free port) of 127.0.0.1."""
        self.host = LOCALHOST
        self.port = port if port is not None else free_port()
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._dir: Path | None = None
        self._child: _Child | None = None

    @property
    def url(self) -> str:
        """The URL clients connect to."""
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def data_dir(self) -> Path:
        """The broker's private temp dir (data, config, log); exists from start to stop."""
        if self._dir is None:
            raise BrokerNotRunningError(f"{self.name} has not been started")
        return self._dir

    @property
    def log_path(self) -> Path:
        """The file that receives the broker's stdout and stderr."""
        return self.data_dir / "broker.log"

    @property
    def pid(self) -> int | None:
        """The pid (and pgid) of the running broker, None when it is not running."""
        return self._child.pid if self._child is not None else None

    @property
    def running(self) -> bool:
        """True while the broker process is alive (possibly paused)."""
        return self._child is not None and not self._child.exited()

    def start(self) -> Self:
        """Start the broker and wait until it is ready; no-op when already running.

        Raises :class:`BrokerStartError` (with the log tail) when it exits or is not ready
        within ``start_timeout`` seconds; nothing is left running then.
        """
        if self.running:
            return self
        created = self._dir is None
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix=f"meshbus-{self.name}-{self.port}-"))
            self._prepare()
        try:
            self._launch()
        except BaseException:
            if created:
                self.stop(timeout=0)
            else:
                self._shutdown(graceful=False)
            raise
        _live.add(self)
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop gracefully (SIGTERM, then SIGKILL after ``timeout``) and delete the temp dir."""
        self._shutdown(graceful=True, timeout=timeout)
        self._remove_dir()
        _live.discard(self)

    def kill(self) -> None:
        """SIGKILL the broker's whole process group, like a crash; the data dir is kept."""
        self._shutdown(graceful=False)

    def restart(self) -> None:
        """Stop (if running) and start again on the same port with the same data dir."""
        self._shutdown(graceful=True)
        self.start()

    def pause(self) -> None:
        """Freeze the broker (SIGSTOP to its process group): it stops answering, sockets stay.
        Returns once the broker's threads are all stopped."""
        child = self._running_child()
        child.signal_group(signal.SIGSTOP)
        child.wait_stopped()

    def resume(self) -> None:
        """Unfreeze a paused broker (SIGCONT to its process group)."""
        self._running_child().signal_group(signal.SIGCONT)

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the broker's log (empty when there is none)."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(0, os.SEEK_END)
                log.seek(max(0, log.tell() - 200 * lines))
                text = log.read().decode(errors="replace")
        except (OSError, BrokerNotRunningError):
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Self:
        """Start the broker (see :meth:`start`)."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the broker (see :meth:`stop`)."""
        self.stop()

    def __repr__(self) -> str:
        """Name, URL and pid."""
        return f"<{type(self).__name__} {self.url} pid={self.pid}>"

    # -- for subclasses ------------------------------------------------------------------------

    def _command(self) -> list[str]:
        """The broker's command line."""
        raise NotImplementedError

    def _probe(self) -> bool:
        """One quick readiness check; OSError counts as not ready."""
        raise NotImplementedError

    def _env(self) -> dict[str, str]:
        """The broker's environment."""
        return dict(os.environ)

    def _prepare(self) -> None:
        """Write config files into the fresh :attr:`data_dir` (called once, before the start)."""

    def _launch(self) -> None:
        """Start the process and wait until :meth:`_probe` says it is ready."""
        self._child = child = _Child(self._command(), self._env(), self.data_dir, self.log_path)
        deadline = time.monotonic() + self.start_timeout
        while True:
            status = child.exit_status()
            if status is not None:
                self._fail(f"exited with status {status} before it was ready")
            with contextlib.suppress(OSError):
                if self._probe():
                    return
            if time.monotonic() > deadline:
                self._fail(f"was not ready after {self.start_timeout:g} s")
            time.sleep(0.05)

    def _shutdown(self, graceful: bool, timeout: float | None = None) -> None:
        """Stop the process group (if any) and forget it; the data dir is kept."""
        child, self._child = self._child, None
        if child is not None:
            child.shutdown(self.stop_timeout if timeout is None else timeout, graceful)

    def _fail(self, what: str) -> NoReturn:
        """Raise :class:`BrokerStartError` with the log tail."""
        raise BrokerStartError(
            f"{self.name} on {self.url} {what}; last lines of its log:\n{self.log_tail()}"
        )

    def _running_child(self) -> _Child:
        if self._child is None or self._child.exited():
            raise BrokerNotRunningError(f"{self.name} is not running")
        return self._child

    def _remove_dir(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


def _find_executable(name: str, *dirs: Path) -> str | None:
    """``name`` in one of ``dirs`` (first) or on PATH."""
    for directory in dirs:
        candidate = directory / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which(name)


def _venv_bin_dirs() -> list[Path]:
    """Where pip puts console scripts and binaries of this interpreter (venv may be inactive)."""
    return [Path(sysconfig.get_path("scripts")), Path(sys.executable).parent]


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("connection closed by the broker")
        data += chunk
    return data
