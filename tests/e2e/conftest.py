"""The end-to-end tier: real containers on a real Docker engine.

The session starts the engine when it is installed but not running (and stops it afterwards
if it did), builds the images once (``scripts/build-images.sh``: local stand-ins for the
official images, since no registry is reachable, then the examples' image from
``compose/Dockerfile``), and each scenario tears down every container, network and volume its
compose project made.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator

import docker
import pytest
from stacks import APP_IMAGE, Stack, log, run

from meshbus.testing._infra import missing


@pytest.fixture(scope="session")
def engine(docker_engine: str) -> Iterator[docker.DockerClient]:
    client = docker.from_env(timeout=300)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def images(engine: docker.DockerClient, script_env: dict[str, str]) -> str:
    """The local images and the examples' image, built once per run."""
    if shutil.which("mmdebstrap") is None and not _have(engine, "meshbus-local/debian:bookworm"):
        missing("mmdebstrap", "apt-get install mmdebstrap (make system-deps does it)")
    started = time.monotonic()
    log("images: scripts/build-images.sh")
    run(["bash", "scripts/build-images.sh"], env=script_env, timeout=1800)
    stack = Stack(engine, "build", ["replicas.yml"])
    try:
        stack.compose("build", "worker")
    finally:
        stack.logs.close()
    log(f"images: ready in {time.monotonic() - started:.1f} s")
    return APP_IMAGE


def _have(client: docker.DockerClient, name: str) -> bool:
    try:
        client.images.get(name)
    except docker.errors.ImageNotFound:
        return False
    return True


_TIER: dict[str, float] = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    if "tests/e2e/" in item.nodeid:
        _TIER.setdefault("start", time.monotonic())
        yield
        _TIER["end"] = time.monotonic()
    else:
        yield


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if "start" in _TIER:
        took = _TIER.get("end", time.monotonic()) - _TIER["start"]
        terminalreporter.write_line(f"e2e tier (real containers): {took:.0f} s wall time")
