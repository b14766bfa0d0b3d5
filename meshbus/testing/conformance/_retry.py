"""Contract point 12: ``max_deliver``, and the runtime's retry policy built on points 3 and 4."""

from __future__ import annotations

import asyncio

from meshbus.app import App
from meshbus.headers import ATTEMPT, DEAD_REASON, dead_letter_subject
from meshbus.message import Message
from meshbus.retry import Retry
from meshbus.testing.harness import Session, contract


class RetryTests:
    """Deliveries bounded per message, and handlers retried with backoff."""

    @contract(12)
    async def test_max_deliver_dead_letters_a_message_delivered_too_often(self, s: Session) -> None:
        """A group subscription with max_deliver=2: a message nacked twice is dead-lettered
        on its third delivery (as the subscriber reads on), with the reason, and never handed
        over again; the next message is delivered as usual."""
        bus = await s.bus()
        subject, group = s.subject("limited"), s.group("g")
        async with (
            bus.subscribe(dead_letter_subject(group), group=s.group("ops")) as graveyard,
            bus.subscribe(subject, group=group, max_deliver=2) as sub,
        ):
            await bus.publish(subject, b"poison")
            for attempt in (1, 2):
                (msg,) = await s.take(sub, 1, ack=False)
                assert (msg.data, msg.attempt) == (b"poison", attempt)
                await msg.nack()
            await bus.publish(subject, b"fine")
            # Read on (the third delivery is dead-lettered as the subscriber reads): on some
            # channels "fine" comes first, the redelivery going through a retry topic.
            got: list[tuple[bytes, int]] = []
            fine = asyncio.Event()

            async def read_on() -> None:
                async for msg in sub:
                    got.append((msg.data, msg.attempt))
                    await msg.ack()
                    fine.set()

            reader = asyncio.create_task(read_on())
            try:
                (corpse,) = await s.take(graveyard, 1, within=30)
                async with asyncio.timeout(20):
                    await fine.wait()
                await asyncio.sleep(0.5)  # a poison handed over after all would show by now
            finally:
                reader.cancel()
            assert got == [(b"fine", 1)]
            assert corpse.data == b"poison"
            assert corpse.headers[DEAD_REASON] == "max_deliver 2 reached (this was delivery 3)"
            assert corpse.headers[ATTEMPT] == "3"

    @contract(12)
    async def test_a_retry_policy_backs_off_then_succeeds_or_dead_letters(self, s: Session) -> None:
        """An app handler failing twice then succeeding is called three times, the second wait
        longer than the first; one failing always is dead-lettered after its attempts, with
        the last error as the reason."""
        bus = await s.bus()
        app = App(s.group("svc"))
        flaky, doomed = s.subject("flaky"), s.subject("doomed")
        times: list[float] = []
        calls: list[int] = []
        succeeded = asyncio.Event()
        retry = Retry(attempts=3, backoff=0.3, factor=3, jitter=0)

        @app.handle(flaky, retry=retry)
        async def sometimes(msg: Message) -> None:
            times.append(asyncio.get_running_loop().time())
            if len(times) < 3:
                raise RuntimeError(f"not yet ({msg.attempt})")
            succeeded.set()

        @app.handle(doomed, retry=retry)
        async def never(msg: Message) -> None:
            calls.append(msg.attempt)
            raise ValueError("always")

        async with bus.subscribe(dead_letter_subject(app.name), group=s.group("ops")) as dead:
            await app.start(bus=bus)
            try:
                await bus.publish(flaky, b"job")
                await bus.publish(doomed, b"job")
                (corpse,) = await s.take(dead, 1, within=30)
                async with asyncio.timeout(30):
                    await succeeded.wait()
                await s.nothing(dead, within=0.5)
            finally:
                await app.stop()
        assert calls == [1, 2, 3]
        assert corpse.headers[DEAD_REASON] == "ValueError: always (attempt 3 of 3)"
        first, second = times[1] - times[0], times[2] - times[1]
        # Within a millisecond: uvloop's loop.time() counts whole milliseconds.
        assert first >= 0.3 - 1e-3
        assert second >= 0.9 - 1e-3
