"""``make demo-compose``: the shop of ``make demo`` in containers, brokerless over dns://:
every confirmed order billed once by one of three billing replicas and shipped, the poison
order dead-lettered after its retries, and orders exiting 0 once its orders are confirmed."""

from __future__ import annotations

import collections
import re

import docker
from stacks import Stack, log, wait_for


def _numbers(text: str, pattern: str) -> list[int]:
    return [int(n) for n in re.findall(pattern, text)]


def test_the_shop_in_containers(engine: docker.DockerClient, images: str) -> None:
    stack = Stack(engine, "shop", ["shop.yml"], env={"ORDERS": "30"})
    try:
        stack.compose("up", "--detach", "--no-build", "--wait", "pricing", "shipping", "billing")
        stack.compose("up", "--detach", "--no-build", "orders")
        wait_for("orders confirmed", lambda: "all 30 orders confirmed" in stack.logs.text(), 120)
        confirmed = set(_numbers(stack.logs.text(), r"order (\d+) confirmed"))
        assert confirmed == set(range(1, 31))
        wait_for(
            "every order shipped or dead-lettered",
            lambda: (
                set(_numbers(stack.logs.text(), r"shipped order (\d+)")) == confirmed - {13}
                and "dead letter: order 13" in stack.logs.text()
            ),
            60,
            detail=lambda: stack.logs.text()[-3000:],
        )
        (orders,) = stack.containers("orders", all=True)
        wait_for("orders exited", lambda: orders.reload() or orders.status == "exited", 60)
        assert orders.attrs["State"]["ExitCode"] == 0
        text = stack.logs.text()
        billed = collections.Counter(_numbers(text, r"billed order (\d+)"))
        assert sorted(billed) == sorted(confirmed - {13})
        assert max(billed.values()) == 1
        replicas = {line.split(":", 1)[0] for line in text.splitlines() if "billed order" in line}
        log(f"shop: 30 orders over dns://, billed by {len(replicas)} replicas, 13 dead-lettered")
        assert len(replicas) >= 2
    finally:
        stack.down()
