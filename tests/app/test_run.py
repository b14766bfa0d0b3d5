"""``meshbus run`` as real processes: /readyz 503 until every handler is attached, then 200;
SIGTERM under load turns it 503 at once, drains, exits 0, and every confirmed publish was
handled exactly once by some replica. On memory:// (+ a listen address), tcp://, file:// and
nats://; then the command's bad input, one line and a non-zero status each."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

import meshbus
from meshbus.bus import Outgoing
from meshbus.testing.brokers import NatsServer

SERVICE = textwrap.dedent(
    """
    import asyncio, json, os, sys
    import meshbus
    from meshbus.app import App

    app = App("worker")

    @app.on_startup
    async def warm_up() -> None:
        await asyncio.sleep(float(os.environ.get("WARM_UP", "0")))

    @app.on_shutdown
    async def flush() -> None:  # what a service might flush on its way out
        await asyncio.sleep(float(os.environ.get("FLUSH", "0.5")))

    @app.handle("jobs.>", concurrency=4)
    async def job(body: dict) -> None:
        await asyncio.sleep(0.002)
        sys.stdout.write(json.dumps({"id": body["id"]}) + "\\n")  # one write: workers share it
        sys.stdout.flush()
    """
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Replica:
    process: asyncio.subprocess.Process
    health: int
    out: list[int]
    reader: asyncio.Task[None]
    progress: asyncio.Event

    async def status(self) -> int:
        """The HTTP status of /readyz (0: no answer)."""
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.health)
        except OSError:
            return 0
        try:
            writer.write(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = await reader.read()
        except OSError:
            return 0  # the process went between connecting and answering
        finally:
            writer.close()
        return int(answer.split()[1]) if answer else 0


async def _start(
    tmp_path: Path, *args: str, warm_up: float = 1.0, env: dict[str, str] | None = None
) -> Replica:
    (tmp_path / "worker_app.py").write_text(SERVICE)
    health = _free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "meshbus",
        "run",
        "worker_app:app",
        "--health",
        f"127.0.0.1:{health}",
        "--drain-timeout",
        "20",
        *args,
        cwd=tmp_path,
        env={**os.environ, "WARM_UP": str(warm_up), **(env or {})},
        stdout=subprocess.PIPE,
    )
    out: list[int] = []
    progress = asyncio.Event()

    async def read() -> None:
        assert process.stdout is not None
        async for line in process.stdout:
            out.append(json.loads(line)["id"])
            progress.set()

    return Replica(process, health, out, asyncio.create_task(read()), progress)


async def _wait_ready(replica: Replica) -> list[int]:
    """Poll /readyz until 200; return every status seen on the way."""
    seen: list[int] = []
    async with asyncio.timeout(30):
        while True:
            seen.append(await replica.status())
            if seen[-1] == 200:
                return seen
            await asyncio.sleep(0.05)


@pytest_asyncio.fixture
async def replicas(tmp_path: Path) -> AsyncIterator[list[Replica]]:
    started: list[Replica] = []
    yield started
    for replica in started:
        if replica.process.returncode is None:
            replica.process.kill()
            await replica.process.wait()
        replica.reader.cancel()


Setup = Callable[[Path, NatsServer | None], tuple[list[list[str]], str]]


def _memory(tmp: Path, nats: NatsServer | None) -> tuple[list[list[str]], str]:
    ports = [_free_port(), _free_port()]
    args = [["--url", "memory://worker", "--listen", f"tcp://127.0.0.1:{p}"] for p in ports]
    return args, "tcp://" + ",".join(f"127.0.0.1:{p}" for p in ports)


def _tcp(tmp: Path, nats: NatsServer | None) -> tuple[list[list[str]], str]:
    ports = [_free_port(), _free_port()]
    args = [["--url", f"tcp://127.0.0.1:{p}", "--listen", f"tcp://127.0.0.1:{p}"] for p in ports]
    return args, "tcp://" + ",".join(f"127.0.0.1:{p}" for p in ports)


def _file(tmp: Path, nats: NatsServer | None) -> tuple[list[list[str]], str]:
    (tmp / "bus").mkdir()
    url = f"file://{tmp / 'bus'}"
    return [["--url", url], ["--url", url]], url


def _nats(tmp: Path, nats: NatsServer | None) -> tuple[list[list[str]], str]:
    assert nats is not None
    return [["--url", nats.url], ["--url", nats.url]], nats.url


@pytest.mark.asyncio
@pytest.mark.parametrize("setup", [_memory, _tcp, _file, _nats], ids=lambda f: f.__name__[1:])
async def test_run_ready_then_sigterm_under_load_drains_and_loses_nothing(
    setup: Setup, tmp_path: Path, replicas: list[Replica], request: pytest.FixtureRequest
) -> None:
    nats = request.getfixturevalue("nats_server") if setup is _nats else None
    worker_args, publisher_url = setup(tmp_path, nats)
    for args in worker_args:
        replicas.append(await _start(tmp_path, *args))
    first, second = replicas
    seen = await _wait_ready(first)
    assert 503 in seen  # the startup hook holds it: not ready before every handler is
    assert set(seen[:-1]) <= {0, 503}  # 0: not listening yet
    await _wait_ready(second)

    confirmed: list[int] = []
    async with meshbus.connect(publisher_url) as bus:

        async def publish(start: int, count: int) -> None:
            batch = [Outgoing(f"jobs.{n % 7}", {"id": n}) for n in range(start, start + count)]
            await bus.publish_many(batch)
            confirmed.extend(range(start, start + count))

        await publish(0, 200)
        load = asyncio.create_task(publish(200, 600))
        await asyncio.sleep(0.02)
        first.process.send_signal(signal.SIGTERM)
        statuses: list[int] = []
        async with asyncio.timeout(60):
            while first.process.returncode is None:
                statuses.append(await first.status())
                await asyncio.sleep(0.01)
        assert await first.process.wait() == 0
        after = statuses[statuses.index(503) :]  # readiness went at once, and never came back
        assert set(after) <= {503, 0}
        assert set(statuses[: statuses.index(503)]) <= {200}
        await load
        await publish(800, 100)
        async with asyncio.timeout(60):
            while len(first.out) + len(second.out) < len(confirmed):
                second.progress.clear()
                await second.progress.wait()
        await asyncio.sleep(0.3)  # anything delivered twice would show by now
    second.process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(second.process.wait(), 60) == 0
    await asyncio.gather(first.reader, second.reader)
    handled = collections.Counter(first.out + second.out)
    assert sorted(handled) == sorted(confirmed)
    assert [n for n, times in handled.items() if times > 1] == []
    assert first.out  # both replicas took a share before the first stopped
    assert second.out


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meshbus", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_bad_input_is_one_line_and_a_non_zero_status(tmp_path: Path) -> None:
    (tmp_path / "worker_app.py").write_text(SERVICE)
    (tmp_path / "broken_app.py").write_text("import not_a_module_anywhere\n")
    (tmp_path / "odd_app.py").write_text(
        "from meshbus.app import App\napp = App('odd')\n@app.handle('a.b')\n"
        "async def h(x: set) -> None: ...\n"
    )
    (tmp_path / "failing_app.py").write_text(
        "from meshbus.app import App\napp = App('failing')\n@app.on_startup\n"
        "async def boom() -> None:\n    raise RuntimeError('no database')\n"
    )
    cases = {
        ("run", "broken_app:app"): (2, "does not import: ModuleNotFoundError"),
        ("run", "worker_app:nothing"): (2, "worker_app.nothing is nothing, not a meshbus.App"),
        ("run", "odd_app:app"): (2, "cannot decode a payload into"),
        ("run", "worker_app:app", "--health", "nonsense"): (2, "give HOST:PORT"),
        ("run", "worker_app:app", "--routes", "{not json"): (2, "looks like JSON but does"),
        ("run", "failing_app:app", "--url", "memory://f"): (1, "no database"),
        ("probe", "http://127.0.0.1:1/readyz"): (1, "meshbus probe"),
        ("probe", "ftp://x/readyz"): (2, "is not an http://host:port/path URL"),
    }
    for args, (status, said) in cases.items():
        done = _run(*args, cwd=tmp_path)
        assert done.returncode == status, (args, done.stderr)
        assert said in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr, (args, done.stderr)


def test_a_health_port_in_use_is_refused_before_any_message_is_taken(tmp_path: Path) -> None:
    (tmp_path / "worker_app.py").write_text(SERVICE)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _run(
            "run",
            "worker_app:app",
            "--url",
            "memory://w",
            "--health",
            f"127.0.0.1:{port}",
            cwd=tmp_path,
        )
    assert done.returncode == 2
    assert f"--health 127.0.0.1:{port}: cannot listen" in done.stderr
    assert "running" not in done.stderr  # the app never started


@pytest.mark.asyncio
async def test_workers_share_one_listen_port_and_drain_together(
    tmp_path: Path, replicas: list[Replica]
) -> None:
    """--workers 2: two processes of the app behind one listen address (SO_REUSEPORT); the
    parent's /readyz is 200 once both are ready, and SIGTERM drains both, losing nothing."""
    port = _free_port()
    parent = await _start(
        tmp_path,
        "--workers",
        "2",
        "--url",
        "memory://worker",
        "--listen",
        f"tcp://127.0.0.1:{port}",
        warm_up=0.5,
    )
    replicas.append(parent)
    await _wait_ready(parent)
    confirmed: list[int] = []
    for client in range(6):  # separate connections: the kernel spreads them over the workers
        async with meshbus.connect(f"tcp://127.0.0.1:{port}") as bus:
            ids = range(client * 50, client * 50 + 50)
            await bus.publish_many([Outgoing(f"jobs.{n % 3}", {"id": n}) for n in ids])
            confirmed.extend(ids)
    parent.process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(parent.process.wait(), 60) == 0
    await parent.reader
    handled = collections.Counter(parent.out)
    assert sorted(handled) == sorted(confirmed)
    assert max(handled.values()) == 1


@pytest.mark.asyncio
async def test_a_second_signal_exits_at_once_and_logs_are_json_on_uvloop(
    tmp_path: Path, replicas: list[Replica]
) -> None:
    """--log-format json: every stderr line is a JSON record; --loop uvloop runs the app on
    uvloop; a second SIGTERM during a long drain exits at once, without waiting for it."""
    (tmp_path / "worker_app.py").write_text(SERVICE)
    health = _free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "meshbus", "run", "worker_app:app",
        "--url", "memory://slow", "--health", f"127.0.0.1:{health}",
        "--log-format", "json", "--loop", "uvloop", "--drain-timeout", "60",
        cwd=tmp_path,
        env={**os.environ, "FLUSH": "60"},  # a shutdown hook that would take a minute
        stderr=subprocess.PIPE,
    )  # fmt: skip
    replica = Replica(process, health, [], asyncio.create_task(asyncio.sleep(0)), asyncio.Event())
    replicas.append(replica)
    await _wait_ready(replica)
    process.send_signal(signal.SIGTERM)
    async with asyncio.timeout(10):
        while await replica.status() == 200:  # noqa: ASYNC110 -- another process's state
            await asyncio.sleep(0.02)
    started = asyncio.get_running_loop().time()
    process.send_signal(signal.SIGTERM)
    status = await asyncio.wait_for(process.wait(), 10)
    assert asyncio.get_running_loop().time() - started < 5  # not the minute of the hook
    assert status == 128 + signal.SIGTERM
    assert process.stderr is not None
    records = [json.loads(line) for line in (await process.stderr.read()).splitlines()]
    messages = [r["msg"] for r in records]
    assert "app 'worker' on the uvloop event loop" in messages
    assert "second signal: exiting at once" in messages
    assert {r["level"] for r in records} <= {"info", "warning", "error"}
