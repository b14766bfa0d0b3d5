"""A producer service: publishes ``events.tick`` broadcasts and ``jobs.work`` jobs, and prints a
JSON line for each job once the channel has confirmed it.

A publish that fails (a broker restarting, no replica reachable yet) is retried until it is
confirmed, so every ``confirmed`` line is a message the channel took responsibility for: the
end-to-end tests check that each one reached a worker.

    python examples/producer.py --jobs 300 --events 5
    python examples/producer.py --jobs 0 --rate 50      # until SIGTERM, 50 jobs a second
    python examples/producer.py --requests 3            # request/reply with the group
    python examples/producer.py --keys 16               # jobs keyed k0..k15 (Kafka partitions)

``MESHBUS_URL`` says where messages go: ``dns://worker:7000`` for every replica of the
``worker`` service, or a broker (``nats://nats:4222``, ``amqp://guest:guest@rabbitmq/``,
``kafka://kafka:9092``), or ``file:///bus`` on a shared volume.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import time

import meshbus


def log(**fields: object) -> None:
    print(json.dumps({"producer": True, "t": round(time.time(), 3), **fields}), flush=True)


async def publish(
    bus: meshbus.Bus, subject: str, seq: int, stop: asyncio.Event, key: str | None = None
) -> bool:
    """Publish until confirmed (or stopped); say what happened."""
    while True:
        try:
            await bus.publish(subject, {"seq": seq}, key=key, timeout=5)
            return True
        except meshbus.MeshbusError as exc:
            log(kind="retry", seq=seq, error=type(exc).__name__, detail=str(exc)[:200])
            if stop.is_set():
                return False
            await asyncio.sleep(0.2)


async def main(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with meshbus.connect(os.environ.get("MESHBUS_URL")) as bus:
        log(kind="connected", url=os.environ.get("MESHBUS_URL", ""))
        if args.settle:
            await asyncio.sleep(args.settle)
        for seq in range(args.events):
            if await publish(bus, "events.tick", seq, stop):
                log(kind="event", seq=seq)
        for seq in range(args.requests):
            reply = await bus.request("jobs.ask", {"seq": seq}, timeout=10)
            log(kind="reply", seq=seq, reply=reply.json())
        confirmed = 0
        seq = 0
        interval = 1 / args.rate if args.rate else 0.0
        started = loop.time()
        while (args.jobs == 0 or seq < args.jobs) and not stop.is_set():
            key = f"k{seq % args.keys}" if args.keys else None
            if await publish(bus, "jobs.work", seq, stop, key):
                confirmed += 1
                log(kind="confirmed", seq=seq)
            seq += 1
            if interval:
                delay = started + seq * interval - loop.time()
                if delay > 0:
                    try:
                        await asyncio.wait_for(stop.wait(), delay)
                    except TimeoutError:
                        pass
        log(kind="done", jobs=seq, confirmed=confirmed)


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100, help="jobs to publish; 0: until stopped")
    parser.add_argument("--events", type=int, default=3, help="broadcast events to publish first")
    parser.add_argument("--requests", type=int, default=0, help="requests to make of the group")
    parser.add_argument("--rate", type=float, default=0, help="jobs a second (0: no limit)")
    parser.add_argument(
        "--keys",
        type=int,
        default=0,
        help="spread jobs over this many keys (order is kept per key; on Kafka a group shares "
        "one publisher's jobs only by key, since unkeyed ones stay on one partition, in order)",
    )
    parser.add_argument("--settle", type=float, default=0, help="seconds to wait before publishing")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse()))
