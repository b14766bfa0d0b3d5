"""meshbus.App on memory://: typed handlers on every codec path, retry with backoff, invalid
payloads dead-lettered, replies encoded, publish= pipelines, hooks, health, and every kind of
bad input refused at start."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import BaseModel

import meshbus
from meshbus.app import App
from meshbus.errors import ConfigurationError, StartupFailed
from meshbus.retry import Retry


class Order(BaseModel):
    id: int
    total: float


@dataclasses.dataclass
class Point:
    x: int
    y: int


async def _dead(app: App, group: str, n: int, timeout: float = 5.0) -> list[meshbus.Message]:
    found: list[meshbus.Message] = []
    async with app.bus.subscribe(f"dead-letter.{group}") as sub:
        async with asyncio.timeout(timeout):
            async for msg in sub:
                found.append(msg)
                await msg.ack()
                if len(found) == n:
                    return found
    return found


@pytest.mark.asyncio
async def test_typed_handlers_on_every_codec_path() -> None:
    app = App("typed")
    seen: dict[str, Any] = {}

    @app.handle("t.model")
    async def model(order: Order) -> None:
        seen["model"] = order

    @app.handle("t.dataclass")
    def dc(point: Point) -> None:
        seen["dataclass"] = point

    @app.handle("t.dict")
    async def as_dict(body: dict[str, int], msg: meshbus.Message) -> None:
        seen["dict"] = (body, msg.subject)

    @app.handle("t.list")
    async def as_list(body: list[int]) -> None:
        seen["list"] = body

    @app.handle("t.str")
    async def as_str(body: str) -> None:
        seen["str"] = body

    @app.handle("t.bytes")
    async def as_bytes(body: bytes, bus: meshbus.Bus) -> None:
        seen["bytes"] = (body, isinstance(bus, meshbus.Bus))

    @app.handle("t.message")
    async def as_message(msg):  # type: ignore[no-untyped-def]  # unannotated: the Message
        seen["message"] = msg.json()

    async with app.test() as t:
        await t.publish("t.model", Order(id=1, total=2.5))
        await t.publish("t.dataclass", Point(3, 4))
        await t.publish("t.dict", {"a": 1})
        await t.publish("t.list", [1, 2])
        await t.publish("t.str", "hello")
        await t.publish("t.bytes", b"\x00\xff")
        await t.publish("t.message", {"m": True})
        calls = await t.handled("t.>", 7)
    assert [c.error for c in calls] == [None] * 7
    assert seen == {
        "model": Order(id=1, total=2.5),
        "dataclass": Point(3, 4),
        "dict": ({"a": 1}, "t.dict"),
        "list": [1, 2],
        "str": "hello",
        "bytes": (b"\x00\xff", True),
        "message": {"m": True},
    }


@pytest.mark.asyncio
async def test_a_payload_that_does_not_validate_is_dead_lettered_and_never_handled() -> None:
    app = App("strict")
    called: list[Order] = []

    @app.handle("orders.created", retry=Retry(attempts=5, backoff=0))
    async def bill(order: Order) -> None:
        called.append(order)

    async with app.test() as t:
        dead = asyncio.create_task(_dead(app, "strict", 2))
        await asyncio.sleep(0.05)
        await t.publish("orders.created", {"id": "not a number"})
        await t.publish("orders.created", b"not json at all")
        letters = await dead
    assert called == []
    assert [m.attempt for m in letters] == [1, 1]  # never retried
    reasons = [m.headers["mb-dead-reason"] for m in letters]
    assert all(r.startswith("invalid payload: payload does not decode as Order") for r in reasons)
    assert "id" in reasons[0]


@pytest.mark.asyncio
async def test_retry_calls_again_with_growing_delays_then_succeeds() -> None:
    app = App("retrying")
    times: list[float] = []

    @app.handle("jobs.flaky", retry=Retry(attempts=5, backoff=0.1, factor=2, jitter=0))
    async def flaky(body: dict[str, int]) -> None:
        times.append(asyncio.get_running_loop().time())
        if len(times) < 3:
            raise RuntimeError("not yet")

    async with app.test() as t:
        await t.publish("jobs.flaky", {"n": 1})
        calls = await t.handled("jobs.flaky", 3, timeout=10)
    assert [c.message.attempt for c in calls] == [1, 2, 3]
    assert [type(c.error).__name__ for c in calls] == ["RuntimeError", "RuntimeError", "NoneType"]
    first, second = times[1] - times[0], times[2] - times[1]
    assert first >= 0.1  # 0.1 then 0.2 s: growing by the factor
    assert second >= 0.2
    assert second > first


@pytest.mark.asyncio
async def test_a_handler_failing_always_is_dead_lettered_after_its_attempts() -> None:
    app = App("doomed")

    @app.handle("jobs.bad", retry=Retry(attempts=3, backoff=0.01))
    async def bad(body: dict[str, int]) -> None:
        raise ValueError(f"bad job {body['n']}")

    async with app.test() as t:
        dead = asyncio.create_task(_dead(app, "doomed", 1))
        await asyncio.sleep(0.05)
        await t.publish("jobs.bad", {"n": 7})
        [letter] = await dead
        calls = await t.handled("jobs.bad", 3)
    assert [c.message.attempt for c in calls] == [1, 2, 3]
    assert letter.headers["mb-dead-reason"] == "ValueError: bad job 7 (attempt 3 of 3)"
    assert letter.headers["mb-attempt"] == "3"
    assert letter.json() == {"n": 7}


@pytest.mark.asyncio
async def test_a_handler_that_runs_too_long_is_cancelled_and_retried() -> None:
    app = App("slow")
    started: list[int] = []

    @app.handle("jobs.slow", timeout=0.1, retry=Retry(attempts=2, backoff=0))
    async def slow(msg: meshbus.Message) -> None:
        started.append(msg.attempt)
        await asyncio.sleep(10)

    async with app.test() as t:
        dead = asyncio.create_task(_dead(app, "slow", 1))
        await asyncio.sleep(0.05)
        await t.publish("jobs.slow", b"x")
        [letter] = await dead
    assert started == [1, 2]
    assert letter.headers["mb-dead-reason"] == "handler timed out after 0.1 s (attempt 2 of 2)"


@pytest.mark.asyncio
async def test_a_request_to_a_typed_responder_gets_the_encoded_model_back() -> None:
    app = App("pricing")

    @app.handle("pricing.quote")
    async def quote(sku: str) -> Order:
        return Order(id=len(sku), total=9.5)

    @app.handle("pricing.raw")
    def raw(data: bytes) -> bytes:
        return data[::-1]

    async with app.test() as t:
        reply = await t.request("pricing.quote", "A1")
        raw_reply = await t.request("pricing.raw", b"abc")
    assert reply.content_type == "application/json"
    assert reply.decode(Order) == Order(id=2, total=9.5)
    assert raw_reply.data == b"cba"


@pytest.mark.asyncio
async def test_publish_makes_a_pipeline_stage_keeping_the_key() -> None:
    app = App("stage")

    @app.handle("orders.created", publish="orders.priced")
    async def price(order: Order) -> Order:
        return Order(id=order.id, total=order.total * 2)

    async with app.test() as t, app.bus.subscribe("orders.priced", group="next") as sub:
        await t.publish("orders.created", Order(id=3, total=1.5), key="customer-9")
        async with asyncio.timeout(5):
            msg = await anext(aiter(sub))
        await msg.ack()
    assert msg.decode(Order) == Order(id=3, total=3.0)
    assert msg.key == "customer-9"


@pytest.mark.asyncio
async def test_the_default_group_is_the_app_and_broadcast_reaches_every_replica() -> None:
    url = "memory://replicas-app"
    counts: dict[str, list[int]] = {"a": [], "b": []}
    warm: dict[str, list[int]] = {"a": [], "b": []}
    progress = asyncio.Event()

    def replica(tag: str) -> App:
        app = App("billing", url=url)

        @app.handle("orders.created")
        async def bill(body: dict[str, int]) -> None:
            counts[tag].append(body["n"])
            progress.set()

        @app.handle("orders.created", broadcast=True)
        async def cache(body: dict[str, int]) -> None:
            warm[tag].append(body["n"])
            progress.set()

        return app

    async with replica("a") as a, replica("b"):
        for n in range(20):
            await a.bus.publish("orders.created", {"n": n})
        async with asyncio.timeout(5):
            while len(counts["a"]) + len(counts["b"]) < 20 or min(map(len, warm.values())) < 20:
                progress.clear()
                await progress.wait()
    assert sorted(counts["a"] + counts["b"]) == list(range(20))  # once per service
    assert warm["a"] == warm["b"] == list(range(20))  # every replica


@pytest.mark.asyncio
async def test_hooks_run_in_order_around_the_bus_and_health_follows() -> None:
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: App) -> AsyncIterator[None]:
        events.append("lifespan in")
        yield
        events.append("lifespan out")

    app = App("hooks", lifespan=lifespan)

    @app.on_startup
    async def first() -> None:
        events.append(f"startup 1, bus open: {not app.bus.closed}")

    @app.on_startup
    def second() -> None:
        events.append("startup 2")

    @app.on_shutdown
    async def down_1() -> None:
        events.append("shutdown 1")

    @app.on_shutdown
    def down_2() -> None:
        events.append("shutdown 2")

    @app.handle("x.y")
    async def handler(msg: meshbus.Message) -> None:
        return None

    assert not app.health().ready
    async with app.test():
        health = app.health()
        assert health.ready
        assert health.to_dict()["handlers"][0] == {
            "subject": "x.y",
            "group": "hooks",
            "attached": True,
        }
    assert not app.health().ready
    assert app.health().state == "stopped"
    assert events == [
        "startup 1, bus open: True",
        "startup 2",
        "lifespan in",
        "shutdown 2",
        "shutdown 1",
        "lifespan out",
    ]


@pytest.mark.asyncio
async def test_a_failing_startup_is_a_clear_error_and_nothing_stays_open() -> None:
    app = App("broken")

    @app.on_startup
    async def boom() -> None:
        raise RuntimeError("the database is not there")

    @app.handle("x.y")
    async def handler(msg: meshbus.Message) -> None:
        return None

    with pytest.raises(StartupFailed, match="the database is not there"):
        await app.start(url="memory://broken")
    assert app.state == "stopped"
    assert app.handlers[0].service is None
    assert app._bus is not None
    assert app._bus.closed


class NotEncodable:
    pass


def test_bad_declarations_are_refused_before_anything_runs() -> None:
    app = App("bad")

    with pytest.raises(ConfigurationError, match="cannot decode a payload into"):

        @app.handle("a.b")
        async def odd(thing: NotEncodable) -> None: ...

    with pytest.raises(ConfigurationError, match="cannot encode"):

        @app.handle("a.c")
        async def returns_odd(msg: meshbus.Message) -> NotEncodable:
            return NotEncodable()

    with pytest.raises(ConfigurationError, match="one payload"):

        @app.handle("a.d")
        async def two(a: dict[str, int], b: list[int]) -> None: ...

    @app.handle("a.e")
    async def first(msg: meshbus.Message) -> None: ...

    with pytest.raises(ConfigurationError, match=r"two handlers for 'a\.e' in group 'bad'"):

        @app.handle("a.e")
        async def second(msg: meshbus.Message) -> None: ...

    with pytest.raises(ConfigurationError, match="attempts must be >= 1; backoff must be >= 0"):
        Retry(attempts=0, backoff=-1)
    with pytest.raises(ConfigurationError, match=r"jitter must be within 0\.\.1"):
        Retry(jitter=2)
    with pytest.raises(ConfigurationError, match="timeout= needs an async def"):

        @app.handle("a.f", timeout=1)
        def plain(msg: meshbus.Message) -> None: ...

    with pytest.raises(ConfigurationError, match="timeout must be > 0"):
        app.handle("a.g", timeout=-1)
    with pytest.raises(meshbus.InvalidSubject):
        app.handle("a..h")
    with pytest.raises(ConfigurationError, match="either broadcast or in a group"):
        app.handle("a.i", broadcast=True, group="g")


@pytest.mark.asyncio
async def test_a_failing_broadcast_handler_is_not_retried_and_the_next_message_comes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = App("fanout")
    seen: list[int] = []

    @app.handle("events.>", broadcast=True, retry=Retry(attempts=3, backoff=0))
    async def on_event(body: dict[str, int]) -> None:
        seen.append(body["n"])
        if body["n"] == 1:
            raise RuntimeError("cannot")

    async with app.test() as t:
        await t.publish("events.a", {"n": 1})
        await t.publish("events.a", {"n": 2})
        calls = await t.handled("events.>", 2)
        await asyncio.sleep(0.1)
    assert seen == [1, 2]  # once each: a broadcast message is never delivered again
    assert [type(c.error).__name__ for c in calls] == ["RuntimeError", "NoneType"]
    assert "dropped (broadcast)" in caplog.text
