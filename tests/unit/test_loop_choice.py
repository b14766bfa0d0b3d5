"""``MESHBUS_LOOP``: the event loop the asyncio tests run on (meshbus.testing.pytest_plugin).

The first test checks the loop it runs on against the variable, so that the uvloop tier
(``make uvloop``) fails if its tests quietly ran on asyncio's loop. The others run pytest in a
subprocess with the variable set and unset, so that the default run proves the switch too.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from meshbus.testing.pytest_plugin import LOOP_ENV, loop_choice

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import asyncio
import sys

import pytest


@pytest.mark.asyncio
async def test_probe() -> None:
    kinds = {c.__module__.split(".")[0] for c in type(asyncio.get_running_loop()).__mro__}
    print(f"LOOP={'uvloop' if 'uvloop' in kinds else 'asyncio'}", file=sys.stderr)


@pytest.mark.asyncio
async def test_task() -> None:
    task = asyncio.current_task()
    assert task is not None
    print(f"TASK={type(task).__module__}.{type(task).__name__}", file=sys.stderr)
"""


def loop_kind(loop: asyncio.AbstractEventLoop) -> str:
    kinds = {c.__module__.split(".")[0] for c in type(loop).__mro__}
    return "uvloop" if "uvloop" in kinds else "asyncio"


@pytest.mark.asyncio
async def test_this_run_is_on_the_loop_asked_for() -> None:
    wanted = os.environ.get(LOOP_ENV, "").strip().lower() or "asyncio"
    assert loop_kind(asyncio.get_running_loop()) == wanted


LEAK = """
import asyncio
import socket

import pytest

kept = []


@pytest.mark.asyncio
async def test_leak() -> None:
    ours, theirs = socket.socketpair()
    transport, _ = await asyncio.get_running_loop().connect_accepted_socket(
        asyncio.Protocol, ours
    )
    kept.append((transport, theirs))  # never closed
"""


def run_probe(
    tmp_path: Path, loop: str | None, probe: str = PROBE, *options: str
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "conftest.py").write_text(
        "from meshbus.testing.pytest_plugin import pytest_configure, pytest_report_header\n"
        '__all__ = ["pytest_configure", "pytest_report_header"]\n'
    )
    (tmp_path / "test_probe.py").write_text(probe)
    env = {k: v for k, v in os.environ.items() if k != LOOP_ENV}
    if loop is not None:
        env[LOOP_ENV] = loop
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-s",
         "-o", "asyncio_default_fixture_loop_scope=function", *options, str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_uvloop_runs_every_asyncio_test_on_uvloop(tmp_path: Path) -> None:
    done = run_probe(tmp_path, "uvloop")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "LOOP=uvloop" in done.stderr
    assert "meshbus event loop: uvloop" in done.stdout
    # uvloop runs asyncio's own tasks, which meshbus._aio's task switching relies on.
    assert "TASK=_asyncio.Task" in done.stderr


@pytest.mark.parametrize("value", [None, "", "asyncio", " AsyncIO "])
def test_default_is_asyncio(tmp_path: Path, value: str | None) -> None:
    done = run_probe(tmp_path, value)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "LOOP=asyncio" in done.stderr
    assert "meshbus event loop: asyncio" in done.stdout


def test_a_transport_left_open_on_uvloop_fails_the_test_instead_of_hanging(
    tmp_path: Path,
) -> None:
    """uvloop warns of it from inside the loop's close; raised there, as an error, the warning
    would keep the handle from closing and the close would never return."""
    done = run_probe(tmp_path, "uvloop", LEAK, "-W", "error")
    assert done.returncode == pytest.ExitCode.TESTS_FAILED, done.stdout + done.stderr
    assert "ResourceWarning: unclosed resource" in done.stdout


def test_an_unknown_loop_is_a_usage_error(tmp_path: Path) -> None:
    done = run_probe(tmp_path, "tokio")
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, done.stdout + done.stderr
    assert "MESHBUS_LOOP='tokio'" in done.stderr


def test_missing_uvloop_is_an_error_not_a_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop raises ImportError
    with pytest.raises(pytest.UsageError, match="uvloop cannot be imported"):
        loop_choice({LOOP_ENV: "uvloop"})


def test_choice() -> None:
    assert loop_choice({}) is None
    assert loop_choice({LOOP_ENV: "asyncio"}) is None
    choice = loop_choice({LOOP_ENV: "uvloop"})
    assert choice is not None
    assert choice.name == "uvloop"
    loop = choice.factory()
    try:
        assert loop_kind(loop) == "uvloop"
    finally:
        loop.close()
