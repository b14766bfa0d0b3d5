"""A worker service, run as several replicas: each takes a share of ``jobs.>`` (group
``workers``), every replica gets every ``events.>`` broadcast, and a request on ``jobs.>`` is
answered by the replica that takes it. It prints a JSON line per message before it is settled,
so its log is a record of what it handled.

    meshbus run examples/worker.py:app --health 0.0.0.0:8080

Configuration is the deployment's: ``MESHBUS_URL`` (a broker, or ``memory://`` when it only
serves direct peers), ``MESHBUS_LISTEN`` (``tcp://0.0.0.0:7000`` to serve ``dns://`` and
``tcp://`` publishers), ``WORK_DELAY`` (seconds of pretend work per job).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time

import meshbus

NAME = socket.gethostname()
app = meshbus.App("worker", drain_timeout=20)


def log(**fields: object) -> None:
    print(json.dumps({"worker": NAME, "t": round(time.time(), 3), **fields}), flush=True)


@app.handle("jobs.>", group="workers")
async def job(body: dict[str, int], msg: meshbus.Message) -> dict[str, object]:
    await asyncio.sleep(float(os.environ.get("WORK_DELAY", "0")))
    log(kind="job", subject=msg.subject, seq=body.get("seq"), attempt=msg.attempt)
    return {"worker": NAME, "seq": body.get("seq")}  # the reply, when it was a request


@app.handle("events.>", broadcast=True)
async def event(body: dict[str, int], msg: meshbus.Message) -> None:
    log(kind="event", subject=msg.subject, seq=body.get("seq"), attempt=msg.attempt)


app.after_startup(lambda: log(kind="ready", listen=os.environ.get("MESHBUS_LISTEN", "")))
app.on_shutdown(lambda: log(kind="stopped"))
