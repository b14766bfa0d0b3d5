"""Scenario 5: Swarm. A service name is one virtual IP there; dns://worker:7000 with
swarm_tasks=auto sees that and reaches every replica through tasks.worker, on an overlay
network."""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

import docker
from stacks import APP_IMAGE, COMPOSE, jobs_handled, log, run, swarm, wait_for

JOBS = 90


def service_records(client: docker.DockerClient, service: str) -> list[dict[str, Any]]:
    try:
        chunks = client.services.get(service).logs(stdout=True, stderr=True)
    except docker.errors.NotFound:
        return []
    records = []
    for line in b"".join(chunks).decode(errors="replace").splitlines():
        line = line[line.find("{") :] if "{" in line else ""
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def test_swarm_replicas_found_through_tasks_name(engine: docker.DockerClient, images: str) -> None:
    name = f"mbe2e{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "APP_IMAGE": APP_IMAGE, "WORKERS": "3", "JOBS": str(JOBS)}

    def deploy(producers: int) -> None:
        run(
            ["docker", "stack", "deploy", "--resolve-image", "never", "--prune",
             "-c", str(COMPOSE / "stack.yml"), name],
            env={**env, "PRODUCERS": str(producers)},
        )  # fmt: skip

    with swarm(engine):
        try:
            deploy(producers=0)
            wait_for(
                "three workers ready",
                lambda: (
                    sum(r.get("kind") == "ready" for r in service_records(engine, f"{name}_worker"))
                    >= 3
                ),
                120,
                every=1,
            )
            vip = engine.services.get(f"{name}_worker").attrs["Endpoint"].get("VirtualIPs")
            log(f"worker service virtual IP: {vip}")
            deploy(producers=1)
            wait_for(
                "the producer's summary",
                lambda: any(
                    r.get("kind") == "done" for r in service_records(engine, f"{name}_producer")
                ),
                120,
                every=1,
            )
            producer = service_records(engine, f"{name}_producer")
            assert {"kind": "done", "jobs": JOBS, "confirmed": JOBS}.items() <= next(
                r for r in producer if r.get("kind") == "done"
            ).items()
            workers = service_records(engine, f"{name}_worker")
            wait_for(
                "every job handled",
                lambda: len(jobs_handled(service_records(engine, f"{name}_worker"))) == JOBS,
                30,
            )
            workers = service_records(engine, f"{name}_worker")
            by_worker: dict[str, int] = {}
            for r in workers:
                if r.get("kind") == "job":
                    by_worker[r["worker"]] = by_worker.get(r["worker"], 0) + 1
            log(f"swarm: jobs per replica {by_worker}")
            assert len(by_worker) == 3, by_worker
            ready = {r["worker"] for r in workers if r.get("kind") == "ready"}
            for worker in ready:
                events = sorted(
                    r["seq"] for r in workers if r["worker"] == worker and r["kind"] == "event"
                )
                assert events == [0, 1, 2], f"{worker} got broadcasts {events}"

            # The doctor inside a replica, on the overlay: every task address answers, and a
            # 16 KiB frame crosses the overlay (the MTU probe).
            (task,) = engine.containers.list(
                filters={"label": f"com.docker.swarm.service.name={name}_worker"}
            )[:1]
            code, output = task.exec_run(["meshbus", "doctor", "dns://tasks.worker:7000"])
            text = output.decode()
            log(f"doctor in a replica on the overlay exited {code}:\n{text}")
            assert code == 0, text
            assert text.count("accepts connections") == 3
            assert text.count("16384-byte frame reaches") == 3
        finally:
            run(["docker", "stack", "rm", name], env=env)
            wait_for(
                "the stack's containers and network gone",
                lambda: (
                    not engine.containers.list(
                        all=True, filters={"label": f"com.docker.stack.namespace={name}"}
                    )
                    and not engine.networks.list(names=[f"{name}_mesh"])
                ),
                120,
                every=1,
            )
