"""``meshbus run module:app``: start an :class:`~meshbus.App` as a service process.

- ``--health HOST:PORT`` serves ``/livez`` (200 while the event loop answers) and ``/readyz``
  (200 once the app is ready, 503 before and from the first stop signal on; the body is the
  JSON health report). ``meshbus probe http://127.0.0.1:PORT/readyz`` checks it from inside an
  image without curl.
- SIGTERM or SIGINT: readiness turns false at once, the app drains (contract point 10) within
  ``--drain-timeout``, then the process exits 0. A second signal exits at once.
- ``--workers N`` runs N processes of the app; a direct listen address is shared by them with
  ``SO_REUSEPORT``; the health endpoint (served by the parent) is ready when every worker is.
- ``--loop auto`` uses uvloop where it is installed.

Exit status: 0 after a clean stop, 1 when the app failed to start or a worker died, 2 for a
usage error (an app that does not import, a health port in use...), each said in one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from meshbus.app import App
from meshbus.config import parse_routes
from meshbus.errors import AppNotFound, ConfigurationError, StartupFailed

__all__ = ["HealthServer", "RunOptions", "load_app", "main_run", "probe"]

log = logging.getLogger("meshbus.run")

_STATUS_FD = "MESHBUS_STATUS_FD"  # a worker's pipe to its parent: "ready" / "stopping" lines
_MAX_REQUEST = 8192


def load_app(spec: str) -> App:
    """The ``App`` named by ``spec``: ``module:attribute`` (``module`` alone means
    ``module:app``), where ``module`` is a dotted name importable from the working directory
    or a path to a ``.py`` file."""
    module_name, _, attribute = spec.partition(":")
    attribute = attribute or "app"
    if not module_name:
        raise AppNotFound(f"{spec!r}: give the app as module:attribute, e.g. billing:app")
    try:
        if module_name.endswith(".py") or os.sep in module_name:
            path = Path(module_name)
            if not path.is_file():
                raise AppNotFound(f"{spec!r}: no file {path}")
            loader = importlib.util.spec_from_file_location(path.stem, path)
            if loader is None or loader.loader is None:
                raise AppNotFound(f"{spec!r}: {path} cannot be imported")
            module = importlib.util.module_from_spec(loader)
            sys.modules[path.stem] = module
            loader.loader.exec_module(module)
        else:
            if os.getcwd() not in sys.path:
                sys.path.insert(0, os.getcwd())
            module = importlib.import_module(module_name)
    except AppNotFound:
        raise
    except ConfigurationError as exc:  # a handler refused at decoration, and the like
        raise AppNotFound(f"{spec!r}: {exc}") from exc
    except Exception as exc:
        raise AppNotFound(f"{spec!r} does not import: {type(exc).__name__}: {exc}") from exc
    found = getattr(module, attribute, None)
    if not isinstance(found, App):
        what = "nothing" if found is None else f"a {type(found).__name__}"
        raise AppNotFound(f"{spec!r}: {module_name}.{attribute} is {what}, not a meshbus.App")
    return found


# -- the health endpoint ------------------------------------------------------------------------


class HealthServer:
    """``/livez`` and ``/readyz`` over HTTP/1.1 (``Connection: close``), from a function that
    reports ``(ready, body)``."""

    def __init__(self, report: Callable[[], tuple[bool, dict[str, Any]]]) -> None:
        self.report = report
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> None:
        """Listen; ``ConfigurationError`` when the address cannot be listened on."""
        try:
            self._server = await asyncio.start_server(self._serve, host, port)
        except OSError as exc:
            raise ConfigurationError(
                f"--health {host}:{port}: cannot listen: {exc.strerror or exc}"
            ) from exc

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                head = await reader.readuntil(b"\r\n\r\n")
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            writer.close()
            return
        line = head.split(b"\r\n", 1)[0].decode("latin-1").split()
        path = urlsplit(line[1]).path if len(line) >= 2 else ""
        body: dict[str, Any]
        if len(line) < 3 or line[0] not in ("GET", "HEAD"):
            status, body = 405, {"error": "GET /livez or /readyz"}
        elif path == "/livez":
            status, body = 200, {"live": True}
        elif path == "/readyz":
            ready, body = self.report()
            status = 200 if ready else 503
        else:
            status, body = 404, {"error": "GET /livez or /readyz"}
        payload = json.dumps(body, default=str).encode()
        reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Unavailable"}
        writer.write(
            f"HTTP/1.1 {status} {reason[status]}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
            + (payload if line and line[0] == "GET" else b"")
        )
        with contextlib.suppress(OSError):
            await writer.drain()
        writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()


def probe(url: str, timeout: float = 2.0) -> int:
    """GET ``url`` (``http://host:port/path``); 0 for a 2xx answer, 1 otherwise (printed)."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        print(f"meshbus probe: {url!r} is not an http://host:port/path URL", file=sys.stderr)
        return 2

    async def get() -> int:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
            writer.write(
                f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            answer = await reader.read()
            writer.close()
        status_line, _, rest = answer.partition(b"\r\n")
        fields = status_line.split()
        status = int(fields[1]) if len(fields) >= 2 and fields[1].isdigit() else 0
        body = rest.partition(b"\r\n\r\n")[2].decode(errors="replace")
        print(f"{status} {body}".strip())
        return 0 if 200 <= status < 300 else 1

    try:
        return asyncio.run(get())
    except (OSError, TimeoutError) as exc:
        print(f"meshbus probe: {url}: {exc or type(exc).__name__}", file=sys.stderr)
        return 1


# -- running ------------------------------------------------------------------------------------


@dataclass(slots=True)
class RunOptions:
    """What ``meshbus run`` was asked."""

    app: str
    url: str | None = None
    routes: str | None = None
    listen: str | None = None
    health: str | None = None
    workers: int = 1
    drain_timeout: float = 10.0
    log_format: str = "text"
    loop: str = "auto"


def _address(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigurationError(f"--health {value!r}: give HOST:PORT, e.g. 0.0.0.0:8080")
    return host.strip("[]") or "0.0.0.0", int(port)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "t": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def _configure_logging(kind: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if kind == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(os.environ.get("MESHBUS_LOG_LEVEL", "INFO").upper())


def _loop_factory(kind: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if kind == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if kind == "uvloop":
            raise ConfigurationError(
                "--loop uvloop: uvloop is not installed (pip install 'meshbus[uvloop]')"
            ) from None
        return None
    return uvloop.new_event_loop


async def _serve_one(app: App, options: RunOptions) -> int:
    """Run one process's app until a stop signal; the exit status."""
    loop = asyncio.get_running_loop()
    log.info("app %r on the %s event loop", app.name, type(loop).__module__.split(".")[0])
    stop = asyncio.Event()
    status_fd = os.environ.get(_STATUS_FD)
    status = os.fdopen(int(status_fd), "w", buffering=1) if status_fd else None

    def tell(state: str) -> None:
        if status is not None:
            with contextlib.suppress(OSError):
                status.write(state + "\n")

    signals = 0

    def on_signal(signum: int) -> None:
        nonlocal signals
        signals += 1
        if signals > 1:
            log.warning("second signal: exiting at once")
            os._exit(128 + signum)
        log.info("signal %d: draining", signum)
        app.begin_stop()  # not ready from now on
        tell("stopping")
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    server: HealthServer | None = None
    if options.health is not None:
        health = app.health

        def report() -> tuple[bool, dict[str, Any]]:
            now = health()
            return now.ready, now.to_dict()

        server = HealthServer(report)
        await server.start(*_address(options.health))
        log.info("health on http://%s/readyz", options.health)
    try:
        try:
            await app.start()
        except StartupFailed as exc:
            log.error("%s", exc)
            return 1
        tell("ready")
        await stop.wait()
        started = time.monotonic()
        await app.stop(options.drain_timeout)
        log.info("app %r stopped, drained in %.2f s", app.name, time.monotonic() - started)
        return 0
    finally:
        if server is not None:
            await server.close()
        if status is not None:
            status.close()


def _with_reuse_port(listen: str) -> str:
    return listen + ("&" if "?" in listen else "?") + "reuse_port=1"


def _worker_args(options: RunOptions) -> list[str]:
    args = [options.app, "--workers", "1", "--drain-timeout", str(options.drain_timeout)]
    args += ["--log-format", options.log_format, "--loop", options.loop]
    for flag, value in (("--url", options.url), ("--routes", options.routes)):
        if value is not None:
            args += [flag, value]
    return args


async def _supervise(options: RunOptions) -> int:
    """``--workers N``: N worker processes of the app, their readiness served here."""
    states: list[str] = ["starting"] * options.workers
    children: list[asyncio.subprocess.Process] = []
    readers: list[asyncio.Task[None]] = []
    stopping = False
    loop = asyncio.get_running_loop()
    listen = options.listen or os.environ.get("MESHBUS_LISTEN")

    async def follow(index: int, fd: int) -> None:
        with os.fdopen(fd, "rb", buffering=0) as pipe:
            reader = asyncio.StreamReader()
            transport, _ = await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(reader), pipe
            )
            try:
                async for line in reader:
                    states[index] = line.decode().strip()
            finally:
                transport.close()
        states[index] = "exited"

    for index in range(options.workers):
        read_end, write_end = os.pipe()
        env = dict(os.environ, **{_STATUS_FD: str(write_end), "MESHBUS_WORKER": str(index)})
        if listen:
            env["MESHBUS_LISTEN"] = _with_reuse_port(listen)
        children.append(
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "meshbus",
                "run",
                *_worker_args(options),
                env=env,
                pass_fds=(write_end,),
            )
        )
        os.close(write_end)
        readers.append(asyncio.create_task(follow(index, read_end)))

    def report() -> tuple[bool, dict[str, Any]]:
        ready = not stopping and all(state == "ready" for state in states)
        return ready, {"ready": ready, "workers": list(states)}

    server: HealthServer | None = None
    if options.health is not None:
        server = HealthServer(report)
        await server.start(*_address(options.health))
    stop = asyncio.Event()
    signals = 0

    def on_signal(signum: int) -> None:
        nonlocal stopping, signals
        signals += 1
        stopping = True
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signal.SIGKILL if signals > 1 else signum)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    exits = [asyncio.create_task(child.wait()) for child in children]
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait([*exits, stopper], return_when=asyncio.FIRST_COMPLETED)
    died = not stop.is_set()
    if died:  # a worker exited on its own: stop the others
        log.error("a worker exited on its own: stopping the others")
        on_signal(signal.SIGTERM)
    codes = await asyncio.gather(*exits)
    stopper.cancel()
    for task in readers:
        task.cancel()
    if server is not None:
        await server.close()
    return 0 if not died and all(code == 0 for code in codes) else 1


def main_run(options: RunOptions) -> int:
    """``meshbus run``: the exit status."""
    _configure_logging(options.log_format)
    try:
        factory = _loop_factory(options.loop)
        if options.health is not None:
            _address(options.health)
        if options.workers < 1:
            raise ConfigurationError(f"--workers must be at least 1, got {options.workers}")
        if options.workers > 1:
            with asyncio.Runner(loop_factory=factory) as runner:
                return runner.run(_supervise(options))
        app = load_app(options.app)
        if options.url is not None:
            app.url = options.url
        if options.routes is not None:
            app.routes = parse_routes(options.routes)
        if options.listen is not None:
            app.listen = options.listen
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(_serve_one(app, options))
    except ConfigurationError as exc:
        print(f"meshbus run: {exc}", file=sys.stderr)
        return 2
