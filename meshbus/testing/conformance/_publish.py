"""Contract points 5 (publish confirms) and 9 (payload limits), and codecs."""

from __future__ import annotations

import dataclasses
import os

import pytest

from meshbus.bus import Outgoing
from meshbus.errors import Closed, PayloadTooLarge
from meshbus.testing.harness import Session, contract


@dataclasses.dataclass
class Point:
    """A dataclass payload."""

    x: int
    y: int


class PublishTests:
    """Publishing: confirms, batches, limits, codecs."""

    @contract(5)
    async def test_publish_returns_the_message_id(self, s: Session) -> None:
        """publish() returns the id the subscriber sees; ids are unique."""
        bus = await s.bus()
        async with bus.subscribe(s.subject("id")) as sub:
            first = await bus.publish(s.subject("id"), b"1")
            second = await bus.publish(s.subject("id"), b"2")
            got = await s.take(sub, 2)
            assert first != second
            assert sorted(m.id for m in got) == sorted([first, second])

    @contract(5)
    async def test_publish_many_delivers_every_message(self, s: Session) -> None:
        """A batch of 500 is confirmed as a whole and every message arrives."""
        bus = await s.bus()
        subject = s.subject("batch")
        async with bus.subscribe(subject, group=s.group("g")) as sub:
            ids = await bus.publish_many(
                [Outgoing(subject, {"n": i}, headers={"i": str(i)}) for i in range(500)]
            )
            assert len(set(ids)) == 500
            got = await s.take(sub, 500)
            assert sorted(m.json()["n"] for m in got) == list(range(500))
            assert all(m.headers["i"] == str(m.json()["n"]) for m in got)

    @contract(5, needs=("durable",))
    async def test_confirmed_publishes_outlive_the_publisher(self, s: Session) -> None:
        """Once publish returns, the message is the channel's: closing the publisher at once
        loses nothing."""
        publisher, consumer = await s.bus(), await s.bus()
        subject, group = s.subject("confirmed"), s.group("g")
        await consumer.declare_group(subject, group)
        for i in range(10):
            await publisher.publish(subject, i)
        await publisher.close()
        async with consumer.subscribe(subject, group=group) as sub:
            got = await s.take(sub, 10)
            assert sorted(m.json() for m in got) == list(range(10))

    @contract(5)
    async def test_publish_on_a_closed_bus_raises(self, s: Session) -> None:
        """A closed bus refuses publish, subscribe and request with Closed."""
        bus = await s.bus()
        await bus.close()
        with pytest.raises(Closed):
            await bus.publish(s.subject("x"), b"x")
        with pytest.raises(Closed):
            await bus.publish_many([(s.subject("x"), b"x")])
        with pytest.raises(Closed):
            await bus.request(s.subject("x"), b"x")
        with pytest.raises(Closed):
            async with bus.subscribe(s.subject("x")):
                pass

    @contract(9)
    async def test_payload_over_the_limit_raises_before_sending(self, s: Session) -> None:
        """A payload one byte over max_payload raises PayloadTooLarge with size and limit;
        nothing is delivered."""
        bus = await s.bus()
        limit = s.caps.max_payload
        subject = s.subject("big")
        async with bus.subscribe(subject) as sub:
            with pytest.raises(PayloadTooLarge) as caught:
                await bus.publish(subject, b"\0" * (limit + 1))
            assert (caught.value.size, caught.value.limit) == (limit + 1, limit)
            with pytest.raises(PayloadTooLarge):
                await bus.publish_many([(subject, b"ok"), (subject, b"\0" * (limit + 1))])
            with pytest.raises(PayloadTooLarge):
                await bus.request(subject, b"\0" * (limit + 1), timeout=1.0)
            await bus.publish(subject, b"sentinel")
            (got,) = await s.take(sub, 1)
            assert got.data == b"sentinel"

    @contract(9)
    async def test_large_payload_round_trips(self, s: Session) -> None:
        """A payload of up to 1 MiB (or half the limit) arrives byte for byte."""
        bus = await s.bus()
        size = min(1 << 20, s.caps.max_payload // 2)
        blob = os.urandom(size)
        async with bus.subscribe(s.subject("blob")) as sub:
            await bus.publish(s.subject("blob"), blob)
            (got,) = await s.take(sub, 1)
            assert got.data == blob

    @contract(5)
    async def test_payload_codecs_round_trip(self, s: Session) -> None:
        """bytes, JSON values, dataclasses and pydantic models arrive as sent."""
        pydantic = pytest.importorskip("pydantic")

        class Order(pydantic.BaseModel):  # type: ignore[name-defined,misc]
            id: int
            sku: str

        bus = await s.bus()
        payloads: list[object] = [b"\x00\xff", {"a": [1, 2]}, [1, "x"], "text", 7, 2.5, True, None]
        async with bus.subscribe(s.subject("codec")) as sub:
            for payload in payloads:
                await bus.publish(s.subject("codec"), payload)
            await bus.publish(s.subject("codec"), Point(1, 2))
            await bus.publish(s.subject("codec"), Order(id=7, sku="A1"))
            got = await s.take(sub, len(payloads) + 2)
        assert got[0].data == b"\x00\xff"
        assert [m.json() for m in got[1 : len(payloads)]] == payloads[1:]
        assert got[3].text() == "text"
        assert got[-2].decode(Point) == Point(1, 2)
        assert got[-1].decode(Order) == Order(id=7, sku="A1")
