"""``bus.serve`` on the memory channel: its arguments, and what a handler can count on."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

import meshbus
from meshbus import Bus, InvalidSubject, Message
from meshbus.channels.memory import MemoryTransport
from meshbus.registry import TransportRegistry

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def bus() -> AsyncIterator[Bus]:
    async with meshbus.connect(f"memory://{uuid.uuid4().hex}") as made:
        yield made


async def _echo(msg: Message) -> bytes:
    return msg.data


async def _buried(graveyard: meshbus.Subscription) -> Message:
    """The next dead letter, acked."""
    corpse = await asyncio.wait_for(graveyard.__anext__(), 5)
    await corpse.ack()
    return corpse


async def test_bad_arguments_raise_at_the_call(bus: Bus) -> None:
    with pytest.raises(InvalidSubject):
        bus.serve("bad subject", _echo)
    with pytest.raises(InvalidSubject):
        bus.serve("a.b", _echo, group="no spaces")
    with pytest.raises(TypeError, match="callable"):
        bus.serve("a.b", "not a function")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="concurrency"):
        bus.serve("a.b", _echo, concurrency=0)
    with pytest.raises(ValueError, match="prefetch"):
        bus.serve("a.b", _echo, prefetch=0)
    with pytest.raises(ValueError, match="on_error"):
        bus.serve("a.b", _echo, on_error="ignore")  # type: ignore[arg-type]


async def test_serve_before_the_bus_starts_raises() -> None:
    bus = meshbus.connect("memory://not-started")
    with pytest.raises(meshbus.NotStarted):
        await bus.serve("a.b", _echo)


async def test_a_closed_service_cannot_start_again(bus: Bus) -> None:
    service = await bus.serve("a.b", _echo)
    await service.close()
    await service.close()  # idempotent
    with pytest.raises(meshbus.Closed):
        await service.start()


async def test_closing_the_bus_closes_its_services(bus: Bus) -> None:
    service = await bus.serve("a.b", _echo, group="g")
    assert (await bus.request("a.b", b"x", timeout=5)).data == b"x"
    await bus.close()
    assert service.closed
    assert all(w.task is not None and w.task.done() for w in service._workers)


async def test_a_handler_runs_in_its_worker_task(bus: Bus) -> None:
    """current_task() is the same worker task for every message of a one-worker service,
    before and after the handler first waits, and asyncio.timeout works in both parts."""
    tasks: list[tuple[asyncio.Task[object] | None, asyncio.Task[object] | None]] = []

    async def handler(msg: Message) -> str:
        before = asyncio.current_task()
        async with asyncio.timeout(5):
            await asyncio.sleep(0)
        tasks.append((before, asyncio.current_task()))
        return "ok"

    async with bus.serve("a.b", handler, group="g") as service:
        for _ in range(3):
            assert (await bus.request("a.b", b"?", timeout=5)).json() == "ok"
    (worker,) = service._workers
    assert tasks == [(worker.task, worker.task)] * 3


async def test_a_timeout_in_a_handler_rejects_its_message(
    bus: Bus, caplog: pytest.LogCaptureFixture
) -> None:
    """asyncio.timeout firing inside a handler that waits ends that handler only: its message
    goes to the dead-letter subject and the next one is served."""

    async def handler(msg: Message) -> str:
        if msg.data == b"slow":
            async with asyncio.timeout(0.05):
                await asyncio.sleep(10)
        return "fast"

    async with (
        bus.subscribe("dead-letter.g", group="ops") as graveyard,
        bus.serve("a.b", handler, group="g"),
    ):
        await bus.publish("a.b", b"slow")
        corpse = await _buried(graveyard)
        assert "TimeoutError" in corpse.headers["mb-dead-reason"]
        assert (await bus.request("a.b", b"quick", timeout=5)).json() == "fast"
    assert "handler for 'a.b' failed" in caplog.text


async def test_a_handler_raising_cancelled_is_a_failure_not_a_stop(bus: Bus) -> None:
    """CancelledError raised by the handler itself (nobody cancelled its task) is handled as
    a failure; the service goes on."""
    calls = 0

    async def handler(msg: Message) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise asyncio.CancelledError
        return "after"

    async with (
        bus.subscribe("dead-letter.g", group="ops") as graveyard,
        bus.serve("a.b", handler, group="g"),
    ):
        await bus.publish("a.b", b"first")
        corpse = await _buried(graveyard)
        assert corpse.data == b"first"
        assert (await bus.request("a.b", b"again", timeout=5)).json() == "after"


async def test_a_handler_nacking_forever_does_not_starve_the_loop(
    bus: Bus, caplog: pytest.LogCaptureFixture
) -> None:
    """A message whose handler always fails, with on_error="nack", comes again and again;
    other work still runs meanwhile and the service closes."""
    caplog.set_level(logging.CRITICAL, logger="meshbus.serve")
    attempts = 0
    many = asyncio.Event()

    def poison(msg: Message) -> None:
        nonlocal attempts
        attempts = msg.attempt
        if attempts == 200:
            many.set()
        raise ValueError("never works")

    ticks = 0
    ticked = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            if ticks == 20:
                ticked.set()
            await asyncio.sleep(0)

    service = await bus.serve("a.b", poison, group="g", on_error="nack")
    tick = asyncio.create_task(ticker())
    await bus.publish("a.b", b"poison")
    async with asyncio.timeout(10):
        await many.wait()
        await ticked.wait()
    tick.cancel()
    await service.close(timeout=2)
    assert attempts >= 200


async def test_contextvars_set_by_a_handler_stay_in_its_worker(bus: Bus) -> None:
    """A handler runs in its worker's context, copied when the service started (as a task's
    is when it is made); what it sets stays there and does not leak out to the caller."""
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

    async def handler(msg: Message) -> str:
        seen = var.get()
        var.set("handler")
        return seen

    var.set("publisher")
    async with bus.serve("a.b", handler, group="g"):
        var.set("requester")
        assert (await bus.request("a.b", b"?", timeout=5)).json() == "publisher"
        assert (await bus.request("a.b", b"?", timeout=5)).json() == "handler"
    assert var.get() == "requester"


async def test_a_broadcast_service_gets_every_message(bus: Bus) -> None:
    """Without a group, every service on the subject handles every message."""
    seen: dict[str, list[bytes]] = {"a": [], "b": []}
    four = asyncio.Event()

    def collect(into: list[bytes]) -> meshbus.Handler:
        def handler(msg: Message) -> None:
            into.append(msg.data)
            if len(seen["a"]) + len(seen["b"]) == 4:
                four.set()

        return handler

    async with bus.serve("a.*", collect(seen["a"])), bus.serve("a.b", collect(seen["b"])):
        for data in (b"1", b"2"):
            await bus.publish("a.b", data)
        await asyncio.wait_for(four.wait(), 5)
    assert seen == {"a": [b"1", b"2"], "b": [b"1", b"2"]}


class _FailingOnce:
    """A channel's subscription whose first read fails, as a channel's error would surface."""

    def __init__(self, part: meshbus.TransportSubscription) -> None:
        self.part = part
        self.failed = False

    def __aiter__(self) -> _FailingOnce:
        return self

    async def __anext__(self) -> Message:
        if not self.failed:
            self.failed = True
            raise meshbus.ConnectionLost("the channel dropped its connection")
        return await self.part.__anext__()

    async def close(self, timeout: float) -> None:
        await self.part.close(timeout)


class _FlakyTransport(MemoryTransport):
    async def subscribe(  # type: ignore[override]
        self, pattern: str, group: str | None, prefetch: int
    ) -> _FailingOnce:
        return _FailingOnce(await super().subscribe(pattern, group, prefetch))


async def test_a_failed_read_is_logged_and_the_service_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An error from the channel while a worker reads is logged; the worker reads again."""
    registry = TransportRegistry({"flaky": _FlakyTransport}, entry_points=False)
    async with (
        meshbus.connect(f"flaky://{uuid.uuid4().hex}", registry=registry) as bus,
        bus.serve("a.b", _echo, group="g"),
    ):
        assert (await bus.request("a.b", b"still here", timeout=5)).data == b"still here"
    assert "could not read its subscription" in caplog.text
    assert "the channel dropped its connection" in caplog.text


async def test_a_reply_that_cannot_be_sent_rejects_the_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A return value that does not encode, or is over the channel's largest payload, is the
    handler's failure: the request goes to the dead-letter subject with the reason."""
    url = f"memory://{uuid.uuid4().hex}?max_payload=64"
    async with meshbus.connect(url) as bus:

        def handler(msg: Message) -> object:
            return object() if msg.data == b"odd" else b"x" * 65

        async with (
            bus.subscribe("dead-letter.g", group="ops") as graveyard,
            bus.serve("a.b", handler, group="g"),
        ):
            for data in (b"odd", b"big"):
                with pytest.raises(meshbus.RequestTimeout):
                    await bus.request("a.b", data, timeout=0.2)
            reasons = [(await _buried(graveyard)).headers["mb-dead-reason"] for _ in range(2)]
    assert "EncodeError" in reasons[0]
    assert "PayloadTooLarge" in reasons[1]


async def test_a_handler_may_be_a_function_returning_a_value_or_an_awaitable(bus: Bus) -> None:
    """What the handler gives back is awaited when it can be (a coroutine, a future or any
    awaitable), used as it is otherwise; the worker serves the next message either way."""
    loop = asyncio.get_running_loop()

    class Later:
        def __init__(self, value: str) -> None:
            self.value = value

        def __await__(self):  # type: ignore[no-untyped-def]
            yield from asyncio.sleep(0).__await__()
            return self.value

    def handler(msg: Message) -> object:
        kind = msg.text()
        if kind == "plain":
            return "value"
        if kind == "future":
            future: asyncio.Future[str] = loop.create_future()
            loop.call_soon(future.set_result, "from a future")
            return future
        return Later("from an awaitable")

    async with bus.serve("a.b", handler, group="g"):
        for ask, answer in [
            ("plain", "value"),
            ("future", "from a future"),
            ("other", "from an awaitable"),
            ("plain", "value"),
        ]:
            assert (await bus.request("a.b", ask, timeout=5)).json() == answer


async def test_a_handler_outliving_the_close_timeout_is_cancelled(bus: Bus) -> None:
    """close(timeout) cancels a handler still running at the deadline: the service stops,
    and the message it held goes back to its group for another member."""
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def stuck(msg: Message) -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    service = await bus.serve("a.b", stuck, group="g")
    await bus.publish("a.b", b"held")
    await asyncio.wait_for(started.wait(), 5)
    async with asyncio.timeout(5):
        await service.close(timeout=0.1)
    assert cancelled.is_set()
    async with bus.subscribe("a.b", group="g") as again:
        message = await asyncio.wait_for(again.__anext__(), 5)
        assert message.data == b"held"
        assert message.attempt == 2
        await message.ack()


async def test_a_wake_up_skips_waiters_that_gave_up(bus: Bus) -> None:
    """A group member whose wait was cancelled, and a closed service, leave waiters behind in
    the group; a message queued next wakes one that still waits (here, a serving worker)."""
    served: list[bytes] = []
    got = asyncio.Event()

    async def handler(msg: Message) -> None:
        served.append(msg.data)
        got.set()

    async with bus.subscribe("a.b", group="g") as reader:
        gave_up = asyncio.ensure_future(reader.__anext__())
        await asyncio.sleep(0)  # its waiter is in the group's queue of waiters
        gave_up.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gave_up
        closed = await bus.serve("a.b", handler, group="g")
        await closed.close()  # its waker stays behind, fired
        async with bus.serve("a.b", handler, group="g"):
            await bus.publish("a.b", b"one")
            await asyncio.wait_for(got.wait(), 5)
    assert served == [b"one"]
