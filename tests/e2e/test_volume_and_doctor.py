"""Scenario 4: two containers exchange messages through a named volume with file://.
Scenario 6: on the default bridge, ``meshbus doctor`` says that names do not resolve there and
what to do (and exits non-zero, so it can serve as a healthcheck)."""

from __future__ import annotations

import json

import docker
from stacks import APP_IMAGE, Stack, confirmed, jobs_handled, log, unhandled, wait_for


def test_two_containers_share_messages_through_a_named_volume(
    engine: docker.DockerClient, images: str
) -> None:
    stack = Stack(engine, "volume", ["shared-volume.yml"])
    try:
        stack.compose("up", "--detach", "worker")
        wait_for(
            "the worker ready",
            lambda: any(r["kind"] == "ready" for r in stack.logs.records("worker")),
            60,
        )
        out = stack.compose(
            "run", "--rm", "--no-deps", "producer",
            "python", "examples/producer.py", "--jobs", "200", "--events", "0",
        )  # fmt: skip
        assert '"kind": "done", "jobs": 200, "confirmed": 200' in out, out[-2000:]
        (worker,) = stack.containers("worker")
        assert worker.attrs["HostConfig"]["NetworkMode"] == "none"  # only the volume between
        sent = confirmed([json.loads(line) for line in out.splitlines() if line.startswith("{")])
        assert sent == set(range(200))
        wait_for(
            "all 200 jobs handled by the other container",
            lambda: sent <= set(jobs_handled(stack.logs.records("worker"))),
            60,
            detail=lambda: unhandled(stack, sent),
        )
        mounts = {m["Type"]: m["Name"] for m in worker.attrs["Mounts"]}
        log(f"volume {mounts.get('volume')}: 200 jobs from one container to another")
        assert mounts.get("volume", "").endswith("_bus")
    finally:
        stack.down()


def test_doctor_on_the_default_bridge_says_names_do_not_resolve(
    engine: docker.DockerClient, images: str
) -> None:
    container = engine.containers.run(
        APP_IMAGE,
        ["meshbus", "doctor"],
        environment={"MESHBUS_URL": "dns://worker:7000"},
        network="bridge",
        detach=True,
        labels={"mbe2e.project": "doctor"},
    )
    try:
        status = container.wait(timeout=60)
        output = container.logs().decode()
    finally:
        container.remove(force=True)
    log(f"doctor on the default bridge exited {status['StatusCode']}:\n{output}")
    assert status["StatusCode"] != 0
    assert "default bridge" in output
    assert "user-defined network" in output
    assert "does not resolve" in output


def test_doctor_on_a_user_defined_network_finds_the_replicas(
    engine: docker.DockerClient, images: str
) -> None:
    stack = Stack(engine, "doctor", ["replicas.yml"])
    try:
        stack.compose("up", "--detach", "--wait", "--scale", "worker=2", "worker")
        out = stack.compose(
            "run", "--rm", "--no-deps", "producer", "meshbus", "doctor", "dns://worker:7000"
        )
        log(f"doctor on the compose network:\n{out}")
        addresses = [c.attrs["NetworkSettings"]["Networks"][stack.network()]["IPAddress"]
                     for c in stack.containers("worker")]  # fmt: skip
        for address in addresses:
            assert f"{address}:7000 accepts connections" in out
    finally:
        stack.down()
