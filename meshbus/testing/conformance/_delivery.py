"""Contract points 2 (broadcast), 3 (groups) and 7 (order by key)."""

from __future__ import annotations

import asyncio

from meshbus.bus import Outgoing
from meshbus.subscription import Subscription
from meshbus.testing.harness import Session, contract


class DeliveryTests:
    """Who gets which message."""

    @contract(2)
    async def test_broadcast_reaches_every_subscriber(self, s: Session) -> None:
        """Every live subscriber, on any bus, gets every message."""
        pub, b1, b2 = await s.bus(), await s.bus(), await s.bus()
        subject = s.subject("fan")
        async with b1.subscribe(subject) as one, b2.subscribe(subject) as two:
            for i in range(20):
                await pub.publish(subject, {"n": i})
            for sub in (one, two):
                got = await s.take(sub, 20)
                assert sorted(m.json()["n"] for m in got) == list(range(20))

    @contract(2)
    async def test_broadcast_misses_what_came_before_it(self, s: Session) -> None:
        """A subscriber gets nothing published before its subscription was active."""
        bus = await s.bus()
        subject = s.subject("late")
        await bus.publish(subject, b"before")
        async with bus.subscribe(subject) as sub:
            await bus.publish(subject, b"after")
            (got,) = await s.take(sub, 1)
            assert got.data == b"after"

    @contract(2)
    async def test_broadcast_keeps_nothing_for_absent_subscribers(self, s: Session) -> None:
        """Messages published while a broadcast subscriber was away are not kept for it."""
        bus = await s.bus()
        subject = s.subject("away")
        async with bus.subscribe(subject) as sub:
            await bus.publish(subject, b"1")
            await s.take(sub, 1)
        await bus.publish(subject, b"while away")
        async with bus.subscribe(subject) as sub:
            await bus.publish(subject, b"2")
            (got,) = await s.take(sub, 1)
            assert got.data == b"2"
            await s.nothing(sub)

    @contract(3)
    async def test_group_gives_each_message_to_one_member(self, s: Session) -> None:
        """Members of one group share the messages: each goes to exactly one member."""
        pub, b1, b2 = await s.bus(), await s.bus(), await s.bus()
        subject, group = s.subject("work"), s.group("workers")
        seen: list[int] = []
        all_seen = asyncio.Event()

        async def drain(sub: Subscription) -> None:
            async for msg in sub:
                seen.append(msg.json())
                await msg.ack()
                if len(seen) >= 40:
                    all_seen.set()

        async with (
            b1.subscribe(subject, group=group) as m1,
            b2.subscribe(subject, group=group) as m2,
        ):
            tasks = [asyncio.create_task(drain(m1)), asyncio.create_task(drain(m2))]
            await pub.publish_many([(subject, i) for i in range(40)])
            async with asyncio.timeout(20):
                await all_seen.wait()
            await asyncio.sleep(0.3)  # a duplicate would arrive now
            for task in tasks:
                task.cancel()
        assert sorted(seen) == list(range(40))

    @contract(3)
    async def test_groups_on_wildcard_patterns_share_what_matches(self, s: Session) -> None:
        """A group may subscribe with ``*`` and ``>`` like anyone: each matching message goes
        to one member of each such group, and nothing else does."""
        pub, b1, b2 = await s.bus(), await s.bus(), await s.bus()
        star, tail = s.group("star"), s.group("tail")
        seen: dict[str, list[int]] = {star: [], tail: []}
        enough = {star: asyncio.Event(), tail: asyncio.Event()}
        wanted = {star: 10, tail: 11}

        async def drain(sub: Subscription, group: str) -> None:
            async for msg in sub:
                seen[group].append(msg.json())
                await msg.ack()
                if len(seen[group]) >= wanted[group]:
                    enough[group].set()

        async with (
            b1.subscribe(s.subject("jobs.*"), group=star) as s1,
            b2.subscribe(s.subject("jobs.*"), group=star) as s2,
            b1.subscribe(s.subject("jobs.>"), group=tail) as t1,
            b2.subscribe(s.subject("jobs.>"), group=tail) as t2,
        ):
            tasks = [
                asyncio.create_task(drain(sub, group))
                for sub, group in ((s1, star), (s2, star), (t1, tail), (t2, tail))
            ]
            await pub.publish(s.subject("other"), -1)
            await pub.publish_many([(s.subject(f"jobs.j{i}"), i) for i in range(10)])
            await pub.publish(s.subject("jobs.deep.one"), 10)
            async with asyncio.timeout(20):
                await enough[star].wait()
                await enough[tail].wait()
            await asyncio.sleep(0.3)  # a duplicate or a stray would arrive now
            for task in tasks:
                task.cancel()
        assert sorted(seen[star]) == list(range(10))
        assert sorted(seen[tail]) == list(range(11))

    @contract(3)
    async def test_every_group_and_broadcast_subscriber_gets_every_message(
        self, s: Session
    ) -> None:
        """Each group gets every message; broadcast subscribers too."""
        bus = await s.bus()
        subject = s.subject("multi")
        async with (
            bus.subscribe(subject, group=s.group("a")) as ga,
            bus.subscribe(subject, group=s.group("b")) as gb,
            bus.subscribe(subject) as everyone,
        ):
            await bus.publish_many([(subject, i) for i in range(10)])
            for sub in (ga, gb, everyone):
                got = await s.take(sub, 10)
                assert sorted(m.json() for m in got) == list(range(10))

    @contract(3, needs=("durable",))
    async def test_declared_group_keeps_messages_until_a_member_comes(self, s: Session) -> None:
        """A declared group keeps messages published before any member subscribed."""
        pub, sub_bus = await s.bus(), await s.bus()
        subject, group = s.subject("kept"), s.group("late")
        await pub.declare_group(subject, group)
        await pub.publish_many([(subject, i) for i in range(5)])
        async with sub_bus.subscribe(subject, group=group) as sub:
            got = await s.take(sub, 5)
            assert sorted(m.json() for m in got) == list(range(5))
            assert all(m.attempt == 1 for m in got)

    @contract(3, needs=("durable",))
    async def test_group_exists_from_first_subscription(self, s: Session) -> None:
        """After its first member leaves, a group keeps messages for the next one."""
        bus = await s.bus()
        subject, group = s.subject("stay"), s.group("g")
        async with bus.subscribe(subject, group=group):
            pass
        await bus.publish_many([(subject, i) for i in range(3)])
        async with bus.subscribe(subject, group=group) as sub:
            got = await s.take(sub, 3)
            assert sorted(m.json() for m in got) == [0, 1, 2]

    @contract(3, needs=("durable",))
    async def test_nack_redelivers_with_attempt_counted(self, s: Session) -> None:
        """A nacked message comes again with attempt 2; once acked it does not come again."""
        bus = await s.bus()
        subject, group = s.subject("retry"), s.group("g")
        async with bus.subscribe(subject, group=group) as sub:
            await bus.publish(subject, b"job")
            (first,) = await s.take(sub, 1, ack=False)
            assert first.attempt == 1
            await first.nack()
            (second,) = await s.take(sub, 1)
            assert (second.data, second.attempt, second.id) == (b"job", 2, first.id)
            await s.nothing(sub)

    @contract(3, needs=("durable",))
    async def test_unsettled_message_goes_to_another_member(self, s: Session) -> None:
        """A member that leaves without settling gives its message back to the group, and the
        next delivery counts the attempt."""
        b1, b2 = await s.bus(), await s.bus()
        subject, group = s.subject("handoff"), s.group("g")
        leaving = await b1.subscribe(subject, group=group)
        await b1.publish(subject, b"job")
        (held,) = await s.take(leaving, 1, ack=False)
        async with b2.subscribe(subject, group=group) as stays:
            await leaving.close(timeout=0)
            (again,) = await s.take(stays, 1)
            assert (again.id, again.data, again.attempt) == (held.id, b"job", 2)

    @contract(7, needs=("ordered_by_key",))
    async def test_same_key_keeps_publish_order(self, s: Session) -> None:
        """Messages with one key from one publisher reach a group in publish order."""
        pub, sub_bus = await s.bus(), await s.bus()
        subject, group = s.subject("ordered"), s.group("g")
        keys = ["k1", "k2", "k3"]
        async with sub_bus.subscribe(subject, group=group) as sub:
            for i in range(60):
                key = keys[i % 3]
                await pub.publish(subject, {"k": key, "n": i}, key=key)
            await pub.publish_many(
                [
                    Outgoing(subject, {"k": keys[i % 3], "n": 60 + i}, key=keys[i % 3])
                    for i in range(60)
                ]
            )
            got = await s.take(sub, 120)
        for key in keys:
            numbers = [m.json()["n"] for m in got if m.key == key]
            assert numbers == sorted(numbers), key
            assert len(numbers) == 40, key
