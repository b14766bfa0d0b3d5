"""meshbus._clock: timers kept by one clock thread instead of the event loop's heap."""

from __future__ import annotations

import asyncio
import multiprocessing
import time

import pytest

from meshbus import _clock


@pytest.mark.asyncio
async def test_alarms_fire_in_their_loop_in_order_near_their_time() -> None:
    loop = asyncio.get_running_loop()
    start = time.monotonic()
    fired: list[tuple[str, float, bool]] = []
    done = loop.create_future()

    def note(name: str) -> None:
        in_loop = asyncio.get_running_loop() is loop
        fired.append((name, time.monotonic() - start, in_loop))
        if len(fired) == 3:
            done.set_result(None)

    for name, delay in [("third", 0.3), ("first", 0.1), ("second", 0.2)]:
        _clock.call_at(loop, start + delay, lambda name=name: note(name))  # type: ignore[misc]
    await asyncio.wait_for(done, 5)
    assert [name for name, _, _ in fired] == ["first", "second", "third"]
    assert all(in_loop for _, _, in_loop in fired)
    for (_, at, _), due in zip(fired, (0.1, 0.2, 0.3), strict=True):
        assert at >= due
        assert at < due + 1  # within a second, on a slow and busy machine
    # Nothing of theirs in the loop's heap (wait_for leaves its own timer there, cancelled).
    assert not [h for h in loop._scheduled if not h.cancelled()]  # type: ignore[attr-defined]


@pytest.mark.asyncio
async def test_a_cancelled_alarm_does_not_fire_and_a_later_one_still_does() -> None:
    loop = asyncio.get_running_loop()
    fired: list[str] = []
    now = time.monotonic()
    cancelled = _clock.call_at(loop, now + 0.05, lambda: fired.append("cancelled"))
    _clock.call_at(loop, now + 0.1, lambda: fired.append("kept"))
    cancelled.cancel()
    cancelled.cancel()  # twice is nothing more
    await asyncio.sleep(0.4)
    assert fired == ["kept"]


@pytest.mark.asyncio
async def test_an_earlier_alarm_wakes_the_thread_sleeping_for_a_later_one() -> None:
    loop = asyncio.get_running_loop()
    late = _clock.call_at(loop, time.monotonic() + 60, lambda: None)
    start = time.monotonic()
    await asyncio.wait_for(_clock.sleep(0.05), 5)
    assert time.monotonic() - start < 1
    late.cancel()


@pytest.mark.asyncio
async def test_many_cancelled_alarms_are_swept_from_the_heap() -> None:
    loop = asyncio.get_running_loop()
    far = time.monotonic() + 3600
    for _ in range(5000):
        _clock.call_at(loop, far, lambda: None).cancel()
    _clock.call_at(loop, far, lambda: None).cancel()
    assert len(_clock._clock._heap) < 1000


@pytest.mark.asyncio
async def test_sleep_can_be_cancelled() -> None:
    sleeper = asyncio.ensure_future(_clock.sleep(60))
    await asyncio.sleep(0.01)
    sleeper.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sleeper


def test_an_alarm_of_a_closed_loop_is_dropped() -> None:
    async def arm() -> None:
        _clock.call_at(asyncio.get_running_loop(), time.monotonic() + 0.05, lambda: None)

    asyncio.run(arm())  # the loop is closed before the alarm is due

    async def later() -> None:
        await _clock.sleep(0.2)  # the thread went on past the dropped one

    asyncio.run(asyncio.wait_for(later(), 5))


def _sleep_in_child() -> None:
    asyncio.run(asyncio.wait_for(_clock.sleep(0.05), 5))


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_has_a_clock_of_its_own() -> None:
    async def warm() -> None:
        await _clock.sleep(0.01)  # the parent's thread runs

    asyncio.run(warm())
    child = multiprocessing.get_context("fork").Process(target=_sleep_in_child)
    child.start()
    child.join(10)
    assert child.exitcode == 0
