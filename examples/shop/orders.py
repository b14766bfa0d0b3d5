"""orders: takes ``ORDERS`` orders (one of them poison), prices each with a request to pricing,
and publishes it as ``orders.created``, keyed by customer; prints each order once confirmed."""

from __future__ import annotations

import asyncio
import os
import signal

import meshbus

app = meshbus.App("orders")
_running: set[asyncio.Task[None]] = set()
BASKETS = [["tea", "cake"], ["soup"], ["bread", "tea", "tea"], ["cake", "soup", "bread"]]


async def take_orders() -> None:
    count, poison = int(os.environ.get("ORDERS", "60")), int(os.environ.get("POISON", "13"))
    for n in range(1, count + 1):
        basket = BASKETS[n % len(BASKETS)]
        quote = await app.bus.request("pricing.quote", {"items": basket}, timeout=5)
        total = -1.0 if n == poison else quote.json()["total"]
        customer = f"customer-{n % 7}"
        order = {"id": n, "customer": customer, "total": total}
        await app.bus.publish("orders.created", order, key=customer)
        print(f"orders: order {n} confirmed ({customer}, {total})", flush=True)
        await asyncio.sleep(float(os.environ.get("ORDER_EVERY", "0.05")))
    print(f"orders: all {count} orders confirmed", flush=True)
    if os.environ.get("EXIT_WHEN_DONE"):  # a one-off job in a container: stop as SIGTERM would
        os.kill(os.getpid(), signal.SIGTERM)


@app.after_startup
def start_taking_orders() -> None:
    task = asyncio.create_task(take_orders())
    _running.add(task)
    task.add_done_callback(_running.discard)
