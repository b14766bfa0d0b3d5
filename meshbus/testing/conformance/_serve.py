"""Handlers (``bus.serve``): contract points 3, 4, 6 and 10 kept by a handler the bus runs."""

from __future__ import annotations

import asyncio

from meshbus.headers import DEAD_REASON, DEAD_SUBJECT, dead_letter_subject
from meshbus.message import Message
from meshbus.testing.harness import Session, contract


class ServeTests:
    """``bus.serve(subject, handler)``: replies, settling, errors, concurrency, draining."""

    @contract(6)
    async def test_serve_answers_a_request_with_what_the_handler_returns(self, s: Session) -> None:
        """The handler's return value is the reply; an async and a plain handler alike."""
        client, server = await s.bus(), await s.bus()
        quote, shout = s.subject("quote"), s.subject("shout")

        async def priced(msg: Message) -> dict[str, object]:
            await asyncio.sleep(0)  # waits once: the rest runs in its worker task
            return {"sku": msg.json()["sku"], "price": 7}

        def upper(msg: Message) -> bytes:
            return msg.data.upper()

        async with (
            server.serve(quote, priced, group=s.group("pricing")),
            server.serve(shout, upper, group=s.group("shout")),
        ):
            reply = await client.request(quote, {"sku": "A1"}, timeout=10)
            assert reply.json() == {"sku": "A1", "price": 7}
            assert (await client.request(shout, b"hey", timeout=10)).data == b"HEY"

    @contract(6)
    async def test_serve_leaves_a_reply_the_handler_sent_itself(self, s: Session) -> None:
        """A handler that responds itself is not answered for twice; one returning None to a
        request sends JSON null."""
        client, server = await s.bus(), await s.bus()
        own, empty = s.subject("own"), s.subject("empty")

        async def responds(msg: Message) -> str:
            await msg.respond("mine")
            return "ignored"

        async def nothing(msg: Message) -> None:
            return None

        async with (
            server.serve(own, responds, group=s.group("own")),
            server.serve(empty, nothing, group=s.group("empty")),
        ):
            assert (await client.request(own, b"?", timeout=10)).json() == "mine"
            assert (await client.request(empty, b"?", timeout=10)).json() is None

    @contract(3)
    async def test_serve_handles_each_group_message_once_and_acks_it(self, s: Session) -> None:
        """Published group messages each reach the handler once, acked when it returns: with
        two services in the group, no message is handled twice."""
        a, b, publisher = await s.bus(), await s.bus(), await s.bus()
        subject, group = s.subject("jobs"), s.group("workers")
        seen: list[int] = []
        all_in = asyncio.Event()

        async def work(msg: Message) -> None:
            seen.append(msg.json())
            if len(seen) == 20:
                all_in.set()

        async with a.serve(subject, work, group=group), b.serve(subject, work, group=group):
            await publisher.publish_many([(subject, i) for i in range(20)])
            await asyncio.wait_for(all_in.wait(), 20)
            await asyncio.sleep(0.3)  # a duplicate, or an unacked message again, would come now
        assert sorted(seen) == list(range(20))

    @contract(4)
    async def test_serve_rejects_the_message_of_a_handler_that_raises(self, s: Session) -> None:
        """A handler that raises has its message moved to dead-letter.<group>, the error in
        the reason; the service keeps serving."""
        bus = await s.bus()
        subject, group = s.subject("fragile"), s.group("g")
        handled: list[bytes] = []
        good = asyncio.Event()

        async def fragile(msg: Message) -> None:
            if msg.data == b"bad":
                raise ValueError("cannot parse")
            handled.append(msg.data)
            good.set()

        async with (
            bus.subscribe(dead_letter_subject(group), group=s.group("ops")) as graveyard,
            bus.serve(subject, fragile, group=group),
        ):
            await bus.publish(subject, b"bad")
            (corpse,) = await s.take(graveyard, 1)
            assert corpse.data == b"bad"
            assert corpse.headers[DEAD_SUBJECT] == subject
            assert "ValueError: cannot parse" in corpse.headers[DEAD_REASON]
            await bus.publish(subject, b"good")
            await asyncio.wait_for(good.wait(), 20)
            assert handled == [b"good"]

    @contract(4)
    async def test_serve_nacks_on_error_when_told_to(self, s: Session) -> None:
        """on_error="nack": the message of a handler that raises comes again, attempt 2."""
        bus = await s.bus()
        subject = s.subject("retry")
        attempts: list[int] = []
        done = asyncio.Event()

        async def flaky(msg: Message) -> None:
            attempts.append(msg.attempt)
            if msg.attempt == 1:
                raise ConnectionError("downstream not ready")
            done.set()

        async with bus.serve(subject, flaky, group=s.group("g"), on_error="nack"):
            await bus.publish(subject, b"job")
            await asyncio.wait_for(done.wait(), 20)
        assert attempts == [1, 2]

    @contract(3)
    async def test_serve_runs_at_most_concurrency_handlers(self, s: Session) -> None:
        """With concurrency=2, two handlers run at once, no more; the rest wait their turn."""
        bus = await s.bus()
        subject = s.subject("slots")
        running, peak, finished = 0, 0, 0
        go, two, six = asyncio.Event(), asyncio.Event(), asyncio.Event()

        async def slow(msg: Message) -> None:
            nonlocal running, peak, finished
            running += 1
            peak = max(peak, running)
            if running == 2:
                two.set()
            await go.wait()
            running -= 1
            finished += 1
            if finished == 6:
                six.set()

        async with bus.serve(subject, slow, group=s.group("g"), concurrency=2):
            await bus.publish_many([(subject, i) for i in range(6)])
            await asyncio.wait_for(two.wait(), 20)
            await asyncio.sleep(0.3)
            assert (running, peak) == (2, 2)
            go.set()
            await asyncio.wait_for(six.wait(), 20)
        assert peak == 2

    @contract(10)
    async def test_closing_a_service_lets_its_handler_finish(self, s: Session) -> None:
        """close() waits for a running handler, which settles its message; nothing new is
        taken after the close began."""
        bus, publisher = await s.bus(), await s.bus()
        subject = s.subject("drain")
        started = asyncio.Event()
        finished: list[bytes] = []

        async def handler(msg: Message) -> None:
            started.set()
            await asyncio.sleep(0.3)
            finished.append(msg.data)

        service = await bus.serve(subject, handler, group=s.group("g"))
        await publisher.publish(subject, b"first")
        await asyncio.wait_for(started.wait(), 20)
        await service.close(timeout=10)
        assert finished == [b"first"]
        assert service.closed
