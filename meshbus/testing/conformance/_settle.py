"""Contract point 4: ack, nack, reject."""

from __future__ import annotations

import pytest

from meshbus.errors import AlreadySettled
from meshbus.headers import ATTEMPT, DEAD_GROUP, DEAD_REASON, DEAD_SUBJECT, dead_letter_subject
from meshbus.testing.harness import Session, contract


class SettleTests:
    """Settling messages."""

    @contract(4)
    async def test_settling_twice_raises(self, s: Session) -> None:
        """A message is settled once: any second ack, nack or reject raises AlreadySettled,
        on groups and broadcast subscriptions alike."""
        bus = await s.bus()
        subject = s.subject("twice")
        pairs = [("ack", "ack"), ("ack", "nack"), ("nack", "reject"), ("reject", "ack")]
        for group in (None, s.group("g")):
            async with bus.subscribe(subject, group=group) as sub:
                for first, second in pairs:
                    await bus.publish(subject, f"{first}-{second}")
                    (msg,) = await s.take(sub, 1, ack=False)
                    await getattr(msg, first)()
                    assert msg.settled
                    with pytest.raises(AlreadySettled):
                        await getattr(msg, second)()

    @contract(4)
    async def test_nack_rejects_a_negative_delay(self, s: Session) -> None:
        """nack(delay) with a negative delay is a ValueError and leaves the message unsettled."""
        bus = await s.bus()
        async with bus.subscribe(s.subject("neg"), group=s.group("g")) as sub:
            await bus.publish(s.subject("neg"), b"x")
            (msg,) = await s.take(sub, 1, ack=False)
            with pytest.raises(ValueError, match="delay"):
                await msg.nack(delay=-1)
            assert not msg.settled
            await msg.ack()

    @contract(4, needs=("durable",))
    async def test_nack_with_delay_redelivers_after_the_delay(self, s: Session) -> None:
        """nack(delay=1.0): not redelivered at once, redelivered after, attempt 2."""
        bus = await s.bus()
        subject = s.subject("later")
        async with bus.subscribe(subject, group=s.group("g")) as sub:
            await bus.publish(subject, b"job")
            (msg,) = await s.take(sub, 1, ack=False)
            await msg.nack(delay=1.0)
            await s.nothing(sub, within=0.5)
            (again,) = await s.take(sub, 1, within=20)
            assert (again.data, again.attempt) == (b"job", 2)

    @contract(4)
    async def test_reject_moves_the_message_to_the_dead_letter_subject(self, s: Session) -> None:
        """reject(reason) sends the message to dead-letter.<group> with the original subject,
        the reason and the attempt count in headers; the group does not see it again."""
        bus = await s.bus()
        subject, group = s.subject("poison"), s.group("g")
        dead = dead_letter_subject(group)
        async with (
            bus.subscribe(dead, group=s.group("ops")) as graveyard,
            bus.subscribe(subject, group=group) as sub,
        ):
            await bus.publish(subject, {"bad": True}, headers={"tenant": "a"})
            (msg,) = await s.take(sub, 1, ack=False)
            await msg.reject("cannot parse")
            (corpse,) = await s.take(graveyard, 1)
            assert corpse.subject == dead
            assert corpse.json() == {"bad": True}
            assert corpse.headers[DEAD_SUBJECT] == subject
            assert corpse.headers[DEAD_REASON] == "cannot parse"
            assert corpse.headers[DEAD_GROUP] == group
            assert corpse.headers[ATTEMPT] == "1"
            assert corpse.headers["tenant"] == "a"
            await s.nothing(sub)
