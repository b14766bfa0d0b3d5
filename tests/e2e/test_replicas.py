"""Scenarios 1 and 2: replicas of a service found through Docker's embedded DNS (dns://)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import docker
import pytest
from stacks import Stack, confirmed, jobs_handled, log, unhandled, wait_for

INTERVAL = 2.0  # dns:// refresh period the producer is given (DNS_INTERVAL)


@pytest.fixture
def replicas(engine: docker.DockerClient, images: str) -> Iterator[Stack]:
    stack = Stack(engine, "replicas", ["replicas.yml"], env={"DNS_INTERVAL": str(INTERVAL)})
    try:
        yield stack
    finally:
        stack.down()


def ready_workers(stack: Stack) -> dict[str, float]:
    """worker name -> when it said it was ready."""
    return {
        r["worker"]: float(r["t"]) for r in stack.logs.records("worker") if r["kind"] == "ready"
    }


def test_three_replicas_share_a_group_and_each_gets_every_broadcast(replicas: Stack) -> None:
    replicas.compose("up", "--detach", "--wait", "--scale", "worker=3", "worker")
    wait_for("three ready workers", lambda: len(ready_workers(replicas)) == 3, 30)
    out = replicas.compose(
        "run", "--rm", "--no-deps", "producer",
        "python", "examples/producer.py", "--jobs", "300", "--events", "3", "--requests", "3",
        "--settle", "3",
    )  # fmt: skip
    assert '"kind": "done", "jobs": 300, "confirmed": 300' in out, out[-2000:]
    wait_for("every job handled", lambda: len(jobs_handled(replicas.logs.records())) == 300, 30)

    records = replicas.logs.records("worker")
    per_worker: dict[str, int] = {}
    for r in records:
        if r["kind"] == "job" and r["subject"] == "jobs.work":
            per_worker[r["worker"]] = per_worker.get(r["worker"], 0) + 1
    log(f"jobs per replica: {per_worker}")
    assert len(per_worker) == 3, per_worker
    assert min(per_worker.values()) >= 30, f"the group is not balanced: {per_worker}"
    handled = jobs_handled(records)
    assert all(len(w) == 1 for w in handled.values()), "a job was handled by two replicas"
    for worker in ready_workers(replicas):
        events = sorted(r["seq"] for r in records if r["worker"] == worker and r["kind"] == "event")
        assert events == [0, 1, 2], f"{worker} got broadcasts {events}"
    assert out.count('"kind": "reply"') == 3


def test_scaling_up_gets_new_replicas_traffic_and_down_loses_nothing(replicas: Stack) -> None:
    replicas.compose("up", "--detach", "--wait", "--scale", "worker=3", "worker")
    wait_for("three ready workers", lambda: len(ready_workers(replicas)) == 3, 30)
    replicas.compose(
        "run", "--detach", "--no-deps", "--name", f"{replicas.project}-producer-run",
        "producer", "python", "examples/producer.py", "--jobs", "0", "--rate", "100",
        "--events", "0",
    )  # fmt: skip
    wait_for("a first confirmed job", lambda: bool(confirmed(replicas.logs.records())), 30)

    first = set(ready_workers(replicas))
    replicas.compose("up", "--detach", "--wait", "--no-recreate", "--scale", "worker=5", "worker")
    wait_for("five ready workers", lambda: len(ready_workers(replicas)) == 5, 30)
    new = {w: t for w, t in ready_workers(replicas).items() if w not in first}
    assert len(new) == 2
    time.sleep(2 * INTERVAL * 1.2 + 1)
    records = replicas.logs.records("worker")
    for worker, ready in new.items():
        jobs = [r["t"] for r in records if r["worker"] == worker and r["kind"] == "job"]
        assert jobs, f"new replica {worker} got no jobs within two refresh periods"
        took = min(jobs) - ready
        log(f"new replica {worker}: first job {took:.2f} s after it was ready")
        assert took <= 2 * INTERVAL * 1.2 + 0.5, f"{worker} waited {took:.2f} s for traffic"

    replicas.compose("up", "--detach", "--no-recreate", "--scale", "worker=2", "worker")
    wait_for("two workers", lambda: len(replicas.containers("worker")) == 2, 60)
    time.sleep(2)
    for producer in replicas.containers("producer"):
        producer.stop(timeout=30)
    records = replicas.logs.records()
    done = [r for r in records if r.get("kind") == "done"]
    assert done, "the producer did not finish"
    sent = confirmed(records)
    wait_for(
        "every confirmed job handled",
        lambda: sent <= set(jobs_handled(replicas.logs.records())),
        30,
        detail=lambda: unhandled(replicas, sent),
    )
    stopped = [r["worker"] for r in replicas.logs.records("worker") if r["kind"] == "stopped"]
    log(f"{len(sent)} jobs confirmed and handled; replicas that drained and stopped: {stopped}")
    assert len(stopped) == 3
