"""MESHBUS_SAFE=1 turns every fast path off: checked in a fresh interpreter, as the switch is
read once, at import."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

_PROBE = """
import asyncio, json, socket
import meshbus.fastpath, meshbus._aio as aio
import meshbus_nats._wire as nats_wire

async def fd_of_a_socket():
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    fd = aio.writable_fd(writer.transport)
    writer.close()
    server.close()
    return fd

print(json.dumps({
    "safe": meshbus.fastpath.SAFE,
    "eager": aio.EAGER,
    "running_task_is_public": aio.running_task is asyncio.current_task,
    "writev_fd": asyncio.run(fd_of_a_socket()) is not None,
    "nats_fast": nats_wire.FAST,
    "nats_fast_read": nats_wire.FAST_READ,
}))
"""


def _probe(safe: str | None) -> dict[str, bool]:
    env = {k: v for k, v in os.environ.items() if k != "MESHBUS_SAFE"}
    if safe is not None:
        env["MESHBUS_SAFE"] = safe
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, bool] = json.loads(done.stdout)
    return result


def test_fast_paths_are_on_by_default() -> None:
    found = _probe(None)
    assert found == {
        "safe": False,
        "eager": True,
        "running_task_is_public": False,
        "writev_fd": True,
        "nats_fast": True,
        "nats_fast_read": True,
    }


@pytest.mark.parametrize("value", ["1", "true", "yes"])
def test_meshbus_safe_turns_every_fast_path_off(value: str) -> None:
    found = _probe(value)
    assert found == {
        "safe": True,
        "eager": False,
        "running_task_is_public": True,
        "writev_fd": False,
        "nats_fast": False,
        "nats_fast_read": False,
    }


@pytest.mark.parametrize("value", ["0", "false", ""])
def test_meshbus_safe_off_values(value: str) -> None:
    assert _probe(value)["safe"] is False
