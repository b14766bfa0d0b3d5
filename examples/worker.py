"""A worker service, run as several replicas: each takes a share of ``jobs.>`` with the group
``workers``, every replica gets every ``events.>`` broadcast, and a request on ``jobs.>`` is
answered by whichever replica takes it.

It prints one JSON line per message, flushed before the message is acknowledged, so its log is
a record of what it handled. On SIGTERM (``docker stop``, scaling down) it closes its bus, which
drains: direct peers stop sending to it, and what it already accepted is handled first.

Configuration is the deployment's: ``MESHBUS_URL`` (a broker, or ``memory://`` when it only
serves direct peers), ``MESHBUS_LISTEN`` (``tcp://0.0.0.0:7000`` to serve ``dns://`` and
``tcp://`` publishers), ``WORK_DELAY`` (seconds of pretend work per job).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time

import meshbus

NAME = socket.gethostname()


def log(**fields: object) -> None:
    print(json.dumps({"worker": NAME, "t": round(time.time(), 3), **fields}), flush=True)


async def handle(sub: meshbus.Subscription, kind: str, delay: float) -> None:
    async for msg in sub:
        if delay and kind == "job":
            await asyncio.sleep(delay)
        body = msg.json()
        log(kind=kind, subject=msg.subject, seq=body.get("seq"), attempt=msg.attempt)
        if msg.reply_to:
            await msg.respond({"worker": NAME, "seq": body.get("seq")})  # also acks
        else:
            await msg.ack()


async def main() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    delay = float(os.environ.get("WORK_DELAY", "0"))
    bus = await meshbus.connect(os.environ.get("MESHBUS_URL", "memory://worker"))
    jobs = await bus.subscribe("jobs.>", group="workers")
    events = await bus.subscribe("events.>")
    handlers = [
        asyncio.create_task(handle(jobs, "job", delay)),
        asyncio.create_task(handle(events, "event", 0.0)),
    ]
    log(kind="ready", listen=os.environ.get("MESHBUS_LISTEN", ""))
    await stop.wait()
    log(kind="stopping")
    await bus.close(timeout=20)
    await asyncio.gather(*handlers, return_exceptions=True)
    log(kind="stopped")


if __name__ == "__main__":
    asyncio.run(main())
