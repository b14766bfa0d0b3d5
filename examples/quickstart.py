"""meshbus in one file: broadcast, a work group, request/reply, redelivery, dead letters.

Runs on whatever channel MESHBUS_URL names (default: the in-process memory:// channel):

    python examples/quickstart.py
    MESHBUS_URL=nats://127.0.0.1:4222 python examples/quickstart.py
"""

from __future__ import annotations

import asyncio
import os

import meshbus
from meshbus.headers import DEAD_REASON, DEAD_SUBJECT, dead_letter_subject

URL = os.environ.get("MESHBUS_URL", "memory://quickstart")


def say(who: str, what: str) -> None:
    print(f"  {who:<12} {what}", flush=True)


async def broadcast(bus: meshbus.Bus) -> None:
    print("\n1. Broadcast: every subscriber gets every message")
    async with bus.subscribe("news.*") as alice, bus.subscribe("news.*") as bob:
        await bus.publish("news.weather", {"forecast": "sunny"})
        for name, sub in (("alice", alice), ("bob", bob)):
            msg = await anext(sub)
            say(name, f"got {msg.subject}: {msg.json()}")
            await msg.ack()


async def work_group(bus: meshbus.Bus) -> None:
    print("\n2. A group: each order goes to one worker of the 'billing' group")
    done = asyncio.Event()
    handled: list[int] = []

    async def worker(name: str, sub: meshbus.Subscription) -> None:
        async for msg in sub:
            order = msg.json()
            say(name, f"bills order {order['id']} (customer {msg.key})")
            await asyncio.sleep(0.01)  # the work: real handlers await I/O here
            handled.append(order["id"])
            await msg.ack()
            if len(handled) == 6:
                done.set()

    async with (
        bus.subscribe("orders.created", group="billing") as w1,
        bus.subscribe("orders.created", group="billing") as w2,
    ):
        tasks = [
            asyncio.create_task(worker("worker-1", w1)),
            asyncio.create_task(worker("worker-2", w2)),
        ]
        await bus.publish_many(
            [meshbus.Outgoing("orders.created", {"id": i}, key=f"c{i % 2}") for i in range(6)]
        )
        await asyncio.wait_for(done.wait(), 10)
        for task in tasks:
            task.cancel()
    say("publisher", f"6 orders published, {len(set(handled))} billed, none twice")


async def request_reply(bus: meshbus.Bus) -> None:
    print("\n3. Request/reply: a pricing service answers quotes")

    async def quote(msg: meshbus.Message) -> dict[str, object]:
        sku = msg.json()["sku"]
        return {"sku": sku, "price": 9.5 if sku == "A1" else 20.0}  # the reply

    async with bus.serve("pricing.quote", quote, group="pricing"):
        for sku in ("A1", "B2"):
            reply = await bus.request("pricing.quote", {"sku": sku}, timeout=2.0)
            say("client", f"quote for {sku}: {reply.json()['price']}")
    try:
        await bus.request("pricing.nobody-home", {}, timeout=0.5)
    except (meshbus.NoResponders, meshbus.RequestTimeout) as exc:
        say("client", f"{type(exc).__name__}: {exc}")


async def retries_and_dead_letters(bus: meshbus.Bus) -> None:
    print("\n4. nack redelivers (attempt counted); reject dead-letters with the reason")
    async with (
        bus.subscribe(dead_letter_subject("thumbs"), group="ops") as graveyard,
        bus.subscribe("images.uploaded", group="thumbs") as sub,
    ):
        await bus.publish("images.uploaded", {"file": "cat.png"})
        await bus.publish("images.uploaded", {"file": "broken.gif"})
        settled = 0
        while settled < 2:
            msg = await anext(sub)
            name = msg.json()["file"]
            if name == "cat.png" and msg.attempt == 1:
                say("thumbs", f"{name}: busy, nack (attempt {msg.attempt})")
                await msg.nack()
            elif name == "cat.png":
                say("thumbs", f"{name}: done on attempt {msg.attempt}")
                await msg.ack()
                settled += 1
            else:
                say("thumbs", f"{name}: cannot decode, reject")
                await msg.reject("unsupported format")
                settled += 1
        corpse = await anext(graveyard)
        say(
            "ops",
            f"dead letter from {corpse.headers[DEAD_SUBJECT]}: "
            f"{corpse.json()['file']} ({corpse.headers[DEAD_REASON]})",
        )
        await corpse.ack()


async def bad_input(bus: meshbus.Bus) -> None:
    print("\n5. Bad input is a typed error at the call, before anything is sent")
    limit = bus.capabilities("uploads.raw").max_payload
    for label, attempt in (
        ("subject 'orders..x'", bus.publish("orders..x", {})),
        (f"payload of {limit + 1} bytes", bus.publish("uploads.raw", b"\0" * (limit + 1))),
        ("header 'mb-id'", bus.publish("orders.created", {}, headers={"mb-id": "forged"})),
    ):
        try:
            await attempt
        except meshbus.MeshbusError as exc:
            say("publisher", f"{label}: {type(exc).__name__}")


async def main() -> None:
    print(f"meshbus {meshbus.__version__} on {URL}")
    async with meshbus.connect(URL) as bus:
        await broadcast(bus)
        await work_group(bus)
        await request_reply(bus)
        await retries_and_dead_letters(bus)
        await bad_input(bus)
    print("\nclosed cleanly: every handler settled, every publish confirmed")


if __name__ == "__main__":
    asyncio.run(main())
