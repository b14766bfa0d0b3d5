"""Contract point 6: request / reply."""

from __future__ import annotations

import asyncio

import pytest

from meshbus.errors import NoResponders, NotARequest, RequestTimeout
from meshbus.subscription import Subscription
from meshbus.testing.harness import Session, contract, running


async def _answer(sub: Subscription, tag: str = "") -> None:
    async for msg in sub:
        body = msg.json()
        await msg.respond({"echo": body, "by": tag}, headers={"answered-by": tag or "x"})


class RequestTests:
    """Requests and replies."""

    @contract(6)
    async def test_request_gets_the_reply(self, s: Session) -> None:
        """request() returns the responder's answer, headers included."""
        client, server = await s.bus(), await s.bus()
        subject = s.subject("rpc")
        async with (
            server.subscribe(subject, group=s.group("svc")) as sub,
            running(_answer(sub, "a")),
        ):
            reply = await client.request(subject, {"q": 1}, timeout=10)
            assert reply.json() == {"echo": {"q": 1}, "by": "a"}
            assert reply.headers["answered-by"] == "a"

    @contract(6)
    async def test_concurrent_requests_get_their_own_replies(self, s: Session) -> None:
        """Fifty requests in flight at once each get the answer to their own question."""
        client, server = await s.bus(), await s.bus()
        subject = s.subject("many")
        async with server.subscribe(subject, group=s.group("svc")) as sub, running(_answer(sub)):
            replies = await asyncio.gather(
                *(client.request(subject, i, timeout=15) for i in range(50))
            )
            assert [r.json()["echo"] for r in replies] == list(range(50))

    @contract(6)
    async def test_a_group_answers_each_request_once(self, s: Session) -> None:
        """With two responders in one group, each request is answered by one of them."""
        client, s1, s2 = await s.bus(), await s.bus(), await s.bus()
        subject, group = s.subject("one"), s.group("svc")
        answered: list[str] = []

        async def counting(sub: Subscription, tag: str) -> None:
            async for msg in sub:
                answered.append(tag)
                await msg.respond(tag)

        async with (
            s1.subscribe(subject, group=group) as a,
            s2.subscribe(subject, group=group) as b,
            running(counting(a, "a")),
            running(counting(b, "b")),
        ):
            for i in range(10):
                await client.request(subject, i, timeout=10)
            await asyncio.sleep(0.3)
        assert len(answered) == 10

    @contract(6)
    async def test_no_reply_in_time_raises_request_timeout(self, s: Session) -> None:
        """A responder that never answers makes request() raise RequestTimeout."""
        client, server = await s.bus(), await s.bus()
        subject = s.subject("silent")
        async with server.subscribe(subject, group=s.group("svc")) as sub:
            with pytest.raises(RequestTimeout):
                await client.request(subject, b"?", timeout=0.5)
            (msg,) = await s.take(sub, 1, ack=False)
            await msg.ack()

    @contract(6)
    async def test_each_request_keeps_its_own_timeout(self, s: Session) -> None:
        """A request with a short timeout, sent while one with a long timeout waits, times out
        on its own; the long one still gets its (late) answer."""
        client, server = await s.bus(), await s.bus()
        subject = s.subject("mixed")
        async with server.subscribe(subject, group=s.group("svc")) as sub:
            long = asyncio.ensure_future(client.request(subject, "long", timeout=60))
            try:
                (first,) = await s.take(sub, 1, ack=False)
                assert first.json() == "long"
                with pytest.raises(RequestTimeout):
                    await client.request(subject, "short", timeout=0.5)
                assert not long.done()
                await first.respond("late")
                assert (await asyncio.wait_for(long, 30)).json() == "late"
            finally:
                long.cancel()
            (short,) = await s.take(sub, 1, ack=False)
            assert short.json() == "short"
            await short.ack()

    @contract(6, needs=("no_responders",))
    async def test_nobody_subscribed_raises_no_responders(self, s: Session) -> None:
        """Where the channel can tell nobody subscribes, NoResponders comes before the
        timeout."""
        bus = await s.bus()
        with pytest.raises(NoResponders):
            await bus.request(s.subject("nobody"), b"?", timeout=30)

    @contract(6)
    async def test_respond_to_a_published_message_raises(self, s: Session) -> None:
        """respond() on a message that was published, not requested, raises NotARequest."""
        bus = await s.bus()
        async with bus.subscribe(s.subject("plain")) as sub:
            await bus.publish(s.subject("plain"), b"x")
            (msg,) = await s.take(sub, 1)
            with pytest.raises(NotARequest):
                await msg.respond(b"y")
