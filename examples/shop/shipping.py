"""shipping: ships every billed order."""

from __future__ import annotations

import os
import socket

import meshbus

app = meshbus.App("shipping")
REPLICA = os.environ.get("REPLICA") or socket.gethostname()


@app.handle("orders.billed")
async def ship(order: dict[str, object]) -> None:
    print(f"{REPLICA}: shipped order {order['id']}", flush=True)


@app.after_startup
def ready() -> None:
    print(f"{REPLICA}: ready", flush=True)
