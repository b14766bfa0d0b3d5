"""billing: bills each order once per service (the group ``billing`` is shared by its replicas)
and passes it on to shipping; an order it cannot bill is retried, then dead-lettered."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import meshbus

app = meshbus.App("billing")
REPLICA = os.environ.get("REPLICA") or socket.gethostname()


@dataclass
class Order:
    id: int
    customer: str
    total: float


@app.handle(
    "orders.created",
    publish="orders.billed",
    retry=meshbus.Retry(attempts=3, backoff=0.2),
    concurrency=4,
)
async def bill(order: Order, msg: meshbus.Message) -> Order:
    if order.total < 0:
        print(f"{REPLICA}: cannot bill order {order.id} (attempt {msg.attempt})", flush=True)
        raise ValueError(f"negative total {order.total}")
    print(f"{REPLICA}: billed order {order.id} for {order.customer}: {order.total}", flush=True)
    return order


@app.handle("dead-letter.billing", broadcast=True)
async def gave_up(msg: meshbus.Message) -> None:
    # Brokerless, a dead letter stays with the replica that rejected it (a broker would keep
    # it for any subscriber): this replica reports it.
    reason = msg.headers.get("mb-dead-reason", "?")
    print(f"{REPLICA}: dead letter: order {msg.json()['id']} ({reason})", flush=True)


@app.after_startup
def ready() -> None:
    print(f"{REPLICA}: ready", flush=True)
