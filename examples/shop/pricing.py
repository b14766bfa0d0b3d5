"""pricing: answers ``pricing.quote`` requests with the price of a basket."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import meshbus

app = meshbus.App("pricing")
REPLICA = os.environ.get("REPLICA") or socket.gethostname()
PRICES = {"tea": 3.5, "cake": 4.0, "soup": 6.25, "bread": 2.75}


@dataclass
class Basket:
    items: list[str]


@app.handle("pricing.quote")
def quote(basket: Basket) -> dict[str, float]:
    return {"total": round(sum(PRICES.get(item, 1.0) for item in basket.items), 2)}


@app.after_startup
def ready() -> None:
    print(f"{REPLICA}: ready to quote {len(PRICES)} products", flush=True)
