"""A replica for the multi-process tests: listens on the address given, serves the group
``workers`` on ``jobs.>``, prints one JSON line per message it handles, and on SIGTERM closes
its bus (which drains: peers stop sending, what was accepted is handled first)."""

from __future__ import annotations

import asyncio
import json
import signal
import sys

import meshbus


async def main(listen: str, delay: float) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    bus = await meshbus.connect("memory://replica", listen=listen)
    sub = await bus.subscribe("jobs.>", group="workers")

    async def work() -> None:
        async for msg in sub:
            if delay:
                await asyncio.sleep(delay)
            print(json.dumps({"n": msg.json()}), flush=True)
            await msg.ack()

    worker = asyncio.create_task(work())
    print(json.dumps({"ready": listen}), flush=True)
    await stop.wait()
    await bus.close(timeout=20)
    await worker
    print(json.dumps({"closed": listen}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 0.0))
