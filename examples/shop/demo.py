"""A small shop of services, brokerless, each one an OS process started by ``meshbus run``:

    orders ──request──▶ pricing
       │
       └─publish (key = customer)─▶ billing x3 (one group: each order billed once) ─▶ shipping

Everything talks over tcp:// on 127.0.0.1 (no Docker, no broker). Midway, one billing replica is
stopped with SIGTERM (what ``docker stop`` and a scale-down send): it stops being ready, hands
out what it had accepted, and the other replicas take the rest. Order 13 cannot be billed: it
is retried, then dead-lettered. At the end the demo counts: every confirmed order billed once
(or dead-lettered) and shipped, nothing lost, nothing twice. Exit status 0 when that holds.

    python examples/shop/demo.py            # or: make demo
"""

from __future__ import annotations

import asyncio
import collections
import os
import re
import signal
import socket
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDERS = 40
POISON = 13
STOP_AFTER = 15  # orders confirmed before billing-2 is stopped


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Shop:
    def __init__(self) -> None:
        self.ports = {name: free_port() for name in ("pricing", "shipping", "b1", "b2", "b3")}
        self.processes: dict[str, asyncio.subprocess.Process] = {}
        self.health: dict[str, int] = {}
        self.lines: dict[str, list[str]] = collections.defaultdict(list)
        self.changed = asyncio.Event()
        self.readers: list[asyncio.Task[None]] = []

    def url(self, *names: str) -> str:
        return "tcp://" + ",".join(f"127.0.0.1:{self.ports[n]}" for n in names)

    async def start(self, name: str, module: str, env: dict[str, str]) -> None:
        health = self.health[name] = free_port()
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "meshbus",
            "run",
            f"{HERE / module}:app",
            "--health",
            f"127.0.0.1:{health}",
            env={**os.environ, **env, "REPLICA": name, "MESHBUS_LOG_LEVEL": "ERROR"},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        self.processes[name] = process
        self.readers.append(asyncio.create_task(self.follow(name, process)))

    async def follow(self, name: str, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        async for raw in process.stdout:
            line = raw.decode().rstrip()
            self.lines[name].append(line)
            self.changed.set()
            shown = line.split(": ", 1)[-1] if line.startswith(f"{name}: ") else line
            print(f"  {name:<10} {shown}", flush=True)

    async def ready(self, name: str) -> int:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.health[name])
        except OSError:
            return 0
        writer.write(b"GET /readyz HTTP/1.1\r\nHost: demo\r\n\r\n")
        answer = await reader.read()
        writer.close()
        return int(answer.split()[1]) if answer else 0

    async def wait_ready(self, *names: str) -> None:
        async with asyncio.timeout(30):
            for name in names:
                while await self.ready(name) != 200:  # noqa: ASYNC110 -- polls a process
                    await asyncio.sleep(0.05)

    async def wait_for(self, test: object, timeout: float = 60) -> None:
        async with asyncio.timeout(timeout):
            while not test():  # type: ignore[operator]
                self.changed.clear()
                await self.changed.wait()

    def matching(self, pattern: str, names: tuple[str, ...] | None = None) -> list[re.Match[str]]:
        found = []
        for name, lines in self.lines.items():
            if names is None or name in names:
                found += [m for m in map(re.compile(pattern).search, lines) if m]
        return found

    async def stop(self, name: str) -> int:
        self.processes[name].send_signal(signal.SIGTERM)
        return await self.processes[name].wait()


async def main() -> int:
    shop = Shop()
    billing = ("billing-1", "billing-2", "billing-3")
    print("starting pricing, shipping and three billing replicas (meshbus run, tcp:// only)")
    await shop.start(
        "pricing",
        "pricing.py",
        {"MESHBUS_URL": "memory://pricing", "MESHBUS_LISTEN": shop.url("pricing")},
    )
    await shop.start(
        "shipping",
        "shipping.py",
        {"MESHBUS_URL": "memory://shipping", "MESHBUS_LISTEN": shop.url("shipping")},
    )
    for name, port in zip(billing, ("b1", "b2", "b3"), strict=True):
        env = {"MESHBUS_URL": shop.url("shipping"), "MESHBUS_LISTEN": shop.url(port)}
        await shop.start(name, "billing.py", env)
    try:
        await shop.wait_ready("pricing", "shipping", *billing)
        print("all ready (/readyz 200); starting orders\n")
        await shop.start(
            "orders",
            "orders.py",
            {
                "MESHBUS_URL": shop.url("b1", "b2", "b3"),
                "MESHBUS_ROUTES": f'{{"pricing.>": "{shop.url("pricing")}"}}',
                "ORDERS": str(ORDERS),
                "POISON": str(POISON),
            },
        )
        await shop.wait_for(
            lambda: len(shop.matching(r"order \d+ confirmed", ("orders",))) >= STOP_AFTER
        )
        print("\n>>> stopping billing-2 with SIGTERM, as docker stop or a scale-down would\n")
        status = await shop.stop("billing-2")
        print(f"\n>>> billing-2 drained and exited with status {status}\n")
        await shop.wait_for(lambda: shop.matching(r"all \d+ orders confirmed"))
        confirmed = {int(m[1]) for m in shop.matching(r"order (\d+) confirmed", ("orders",))}
        await shop.wait_for(
            lambda: (
                len(shop.matching(r"shipped order \d+")) >= len(confirmed) - 1
                and shop.matching(r"dead letter: order \d+")
            )
        )
        await asyncio.sleep(0.5)  # anything shipped twice would show by now
    finally:
        for name, process in shop.processes.items():
            if process.returncode is None:
                await shop.stop(name)
        await asyncio.gather(*shop.readers, return_exceptions=True)

    billed = collections.Counter(int(m[1]) for m in shop.matching(r"billed order (\d+)"))
    shipped = collections.Counter(int(m[1]) for m in shop.matching(r"shipped order (\d+)"))
    dead = [int(m[1]) for m in shop.matching(r"dead letter: order (\d+)")]
    print("\nwho billed what:")
    for name in billing:
        orders = sorted(int(m[1]) for m in shop.matching(r"billed order (\d+)", (name,)))
        print(f"  {name}: {len(orders):>3} orders  {orders}")
    lost = sorted(confirmed - set(billed) - set(dead))
    twice = sorted(n for n, times in (billed + shipped).items() if times > 2 or billed[n] > 1)
    unshipped = sorted(set(billed) - set(shipped))
    print(
        f"\nconfirmed {len(confirmed)}, billed {len(billed)}, dead-lettered {dead}, "
        f"shipped {len(shipped)}; lost {lost}, twice {twice}, billed but not shipped {unshipped}"
    )
    ok = not lost and not twice and not unshipped and dead == [POISON]
    print("everything confirmed was handled exactly once" if ok else "SOMETHING WENT WRONG")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
