"""Real containers for the doctor's engine checks, driven with the ``docker`` package.

No image can be pulled here, so the containers run a one-kilobyte image of our own (a root
with ``/bin``, ``/lib`` linking into ``/usr``) with the host's ``/usr`` mounted read-only: the
host's Python 3.11 runs the worktree's ``meshbus`` (stdlib only) and its entry points, mounted
read-only too. Every
network, container and image is named ``mbdoc-...`` and removed by the fixture that made it.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import json
import os
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import meshbus
from meshbus.testing._infra import missing

_HOST = os.environ.get("DOCKER_HOST", "")
SOCKET = _HOST.removeprefix("unix://") if _HOST.startswith("unix://") else "/var/run/docker.sock"
MESHBUS_SOURCE = Path(meshbus.__file__).parent
_START_ENGINE = "apt-get install docker.io and start dockerd (see ENVIRONMENT in the docs)"
LISTENER = """
import asyncio, meshbus
async def main():
    async with meshbus.connect("memory://doctor", listen="tcp://0.0.0.0:7000") as bus:
        async with bus.subscribe("doctor.>", group="probe"):
            print("listening", flush=True)
            await asyncio.Event().wait()
asyncio.run(main())
"""


@pytest.fixture(scope="session")
def docker_client(docker_engine: str) -> Iterator[Any]:
    """A client of the local Docker engine (fails instead of skipping under the CI switch)."""
    try:
        import docker
    except ImportError:
        missing("the docker Python package", "pip install docker (it is in the dev extra)")
    if not Path(SOCKET).exists():
        missing(f"the Docker engine (no socket at {SOCKET})", _START_ENGINE)
    client = docker.DockerClient(base_url=f"unix://{SOCKET}", timeout=60)
    try:
        client.ping()
    except (docker.errors.DockerException, OSError) as exc:
        client.close()
        missing(f"the Docker engine ({exc.__class__.__name__}: {exc})", _START_ENGINE)
    yield client
    client.close()


def _skeleton() -> bytes:
    """A root filesystem of links into /usr (Debian's merged /usr) and empty folders."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for folder in ("etc", "tmp", "proc", "sys", "dev", "run", "usr", "opt", "var/tmp"):
            info = tarfile.TarInfo(folder)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if "tmp" in folder else 0o755
            tar.addfile(info)
        for link in ("bin", "lib", "lib64", "sbin"):
            info = tarfile.TarInfo(link)
            info.type, info.linkname = tarfile.SYMTYPE, f"usr/{link}"
            tar.addfile(info)
        for name, data in (
            ("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"),
            ("etc/ld.so.cache", Path("/etc/ld.so.cache").read_bytes()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture(scope="session")
def base_image(docker_client: Any) -> Iterator[str]:
    """``mbdoc-base:<run>``, imported for this run and removed after it."""
    if not (Path("/usr/bin/python3").exists() and Path("/lib").is_symlink()):
        missing("a merged-/usr host with /usr/bin/python3", "run on Debian 12 (bookworm)")
    repository, run = "mbdoc-base", uuid.uuid4().hex[:8]
    tag = f"{repository}:{run}"
    docker_client.api.import_image_from_data(_skeleton(), repository=repository, tag=run)
    yield tag
    docker_client.images.remove(tag, force=True)


@pytest.fixture(scope="session")
def dist_info(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """meshbus's installed metadata (its channels are entry points), to mount beside it."""
    installed = importlib.metadata.distribution("meshbus")
    folder = tmp_path_factory.mktemp("dist") / f"meshbus-{installed.version}.dist-info"
    folder.mkdir()
    for name in ("METADATA", "entry_points.txt"):
        (folder / name).write_text(installed.read_text(name) or "")
    return folder


class Lab:
    """Networks and containers made for one test, all removed by :meth:`close`."""

    def __init__(self, client: Any, image: str, dist_info: Path) -> None:
        self.client = client
        self.image = image
        self.dist_info = dist_info
        self.prefix = f"mbdoc-{uuid.uuid4().hex[:6]}"
        self._containers: list[Any] = []
        self._networks: list[Any] = []

    def network(self, suffix: str, **options: str) -> str:
        """A user-defined bridge network; driver ``options`` as ``docker network create -o``."""
        name = f"{self.prefix}-{suffix}"
        self._networks.append(self.client.networks.create(name, driver="bridge", options=options))
        return name

    def container(
        self,
        suffix: str,
        networks: list[str],
        command: list[str] | None = None,
        *,
        socket: bool = False,
        labels: dict[str, str] | None = None,
        cap_add: list[str] | None = None,
        aliases: list[str] | None = None,
    ) -> Any:
        """A running container on ``networks`` (default command: the meshbus listener), with
        DNS ``aliases`` on the first."""
        volumes = {
            "/usr": {"bind": "/usr", "mode": "ro"},
            str(MESHBUS_SOURCE): {"bind": "/opt/mb/meshbus", "mode": "ro"},
            str(self.dist_info): {"bind": f"/opt/mb/{self.dist_info.name}", "mode": "ro"},
        }
        if socket:
            volumes[SOCKET] = {"bind": "/var/run/docker.sock", "mode": "ro"}
        container = self.client.containers.create(
            self.image,
            command or ["python3", "-c", LISTENER],
            name=f"{self.prefix}-{suffix}",
            network=networks[0],
            networking_config={
                networks[0]: self.client.api.create_endpoint_config(aliases=aliases or [])
            },
            volumes=volumes,
            environment={
                "PYTHONPATH": "/opt/mb",
                "PYTHONDONTWRITEBYTECODE": "1",
                "PATH": "/usr/local/bin:/usr/bin:/usr/sbin",
            },
            labels=labels or {},
            cap_add=cap_add or [],
        )
        self._containers.append(container)
        for extra in networks[1:]:
            self.client.networks.get(extra).connect(container)
        container.start()
        if command is None:
            self.wait_for(container, "listening")
        return container

    def wait_for(self, container: Any, text: str, timeout: float = 20.0) -> None:
        """Wait until ``text`` is in the container's output."""
        deadline = time.monotonic() + timeout
        while text not in container.logs().decode(errors="replace"):
            container.reload()
            if container.status != "running" or time.monotonic() > deadline:
                logs = container.logs().decode(errors="replace")
                raise AssertionError(f"{container.name} did not say {text!r}: {logs}")
            time.sleep(0.1)

    def doctor(self, container: Any, *args: str) -> tuple[int, list[dict[str, str]]]:
        """``meshbus doctor --json ARGS`` inside ``container``: (exit code, findings)."""
        code, output = container.exec_run(["python3", "-m", "meshbus", "doctor", "--json", *args])
        text = output.decode(errors="replace")
        try:
            return code, json.loads(text[text.index("[") :])
        except ValueError as exc:
            raise AssertionError(f"doctor printed no JSON (exit {code}): {text}") from exc

    def close(self) -> None:
        """Remove every container, then every network, made here."""
        from docker.errors import NotFound

        for container in reversed(self._containers):
            with contextlib.suppress(NotFound):
                container.remove(force=True)
        for network in reversed(self._networks):
            with contextlib.suppress(NotFound):
                network.remove()


@pytest.fixture
def lab(docker_client: Any, base_image: str, dist_info: Path) -> Iterator[Lab]:
    """A :class:`Lab` whose networks and containers are removed after the test."""
    made = Lab(docker_client, base_image, dist_info)
    try:
        yield made
    finally:
        made.close()
