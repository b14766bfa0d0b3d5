"""Watcher against a live DNS server: additions, failures that keep the set, removal only on
repeated absence confirmed by failed connections, rate-limited refreshes, Swarm tasks names.

Waits are bounded generously; no test asserts how fast anything happens.
"""

from __future__ import annotations

import asyncio

import pytest

from meshbus import errors
from meshbus.discovery import DnsSource, StaticSource, Watcher, WatchEvent
from meshbus.testing.dns import FakeDns

pytestmark = pytest.mark.asyncio

BOUND = 10.0  # generous upper bound for anything that should happen "soon"


def source(dns: FakeDns, name: str = "svc", **options: object) -> DnsSource:
    return DnsSource(name, nameserver=dns.nameserver, family="ipv4", timeout=0.3, **options)  # type: ignore[arg-type]


async def test_start_resolves_and_emits_the_first_set(dns: FakeDns) -> None:
    dns.set("svc", "10.0.0.1", "10.0.0.2")
    seen: list[WatchEvent] = []
    async with Watcher(source(dns), interval=60, on_change=seen.append) as watcher:
        assert watcher.addresses == {"10.0.0.1", "10.0.0.2"}
        assert seen == [WatchEvent(frozenset(watcher.addresses), frozenset(), watcher.addresses)]
    assert watcher.closed
    await watcher.close()  # idempotent


async def test_first_lookup_failing_fails_fast(dns: FakeDns) -> None:
    dns.mode = "servfail"
    watcher = Watcher(source(dns), interval=60)
    with pytest.raises(errors.LookupFailed):
        await watcher
    assert watcher.closed


async def test_name_absent_at_start_starts_empty(dns: FakeDns) -> None:
    async with Watcher(source(dns), interval=60) as watcher:
        assert watcher.addresses == set()
        assert watcher.last_error is None


async def test_new_address_appears_within_two_periods(dns: FakeDns) -> None:
    dns.set("svc", "10.0.0.1")
    async with Watcher(source(dns), interval=0.5, jitter=0.2) as watcher:
        events = watcher.events()
        dns.set("svc", "10.0.0.1", "10.0.0.4")
        async with asyncio.timeout(BOUND):
            event = await anext(events)
        assert event.added == {"10.0.0.4"}
        assert event.removed == set()
        assert watcher.addresses == {"10.0.0.1", "10.0.0.4"}


async def test_failed_lookups_keep_the_last_good_set(dns: FakeDns) -> None:
    dns.set("svc", "10.0.0.1", "10.0.0.2")
    async with Watcher(source(dns), interval=60, min_refresh_interval=0) as watcher:
        for mode in ("servfail", "refused", "silent", "garbage", "wrong_id", "short"):
            dns.mode = mode
            assert await watcher.refresh() == {"10.0.0.1", "10.0.0.2"}, mode
            assert isinstance(watcher.last_error, errors.LookupFailed), mode
            # a failed lookup is never taken for an absence, however often it happens
            watcher.suspect("10.0.0.2")
        dns.mode = "answer"
        assert await watcher.refresh() == {"10.0.0.1", "10.0.0.2"}
        assert watcher.last_error is None


async def test_absent_address_is_dropped_only_when_absent_repeatedly_and_suspected(
    dns: FakeDns,
) -> None:
    dns.set("svc", "10.0.0.1", "10.0.0.2")
    removed: list[frozenset[str]] = []
    async with Watcher(
        source(dns),
        interval=60,
        absent_threshold=2,
        min_refresh_interval=0,
        on_change=lambda event: removed.append(event.removed),
    ) as watcher:
        dns.set("svc", "10.0.0.1")
        await watcher.refresh()  # absent once
        watcher.suspect("10.0.0.2")  # connection failed: still only one absence
        await watcher.refresh()  # absent twice, and suspected: gone
        assert watcher.addresses == {"10.0.0.1"}
        assert removed[-1] == {"10.0.0.2"}


async def test_absent_but_still_reachable_address_stays_until_a_connection_fails(
    dns: FakeDns,
) -> None:
    dns.set("svc", "10.0.0.1", "10.0.0.2")
    async with Watcher(source(dns), interval=60, min_refresh_interval=0) as watcher:
        dns.set("svc", "10.0.0.1")  # a replica scaled down, still draining
        for _ in range(4):
            await watcher.refresh()
        assert watcher.addresses == {"10.0.0.1", "10.0.0.2"}
        # an old failure no longer counts once a connection succeeded
        watcher.suspect("10.0.0.1")
        watcher.reachable("10.0.0.1")
        watcher.suspect("10.0.0.2")  # its connection fails at last: gone at once
        assert watcher.addresses == {"10.0.0.1"}


async def test_one_empty_answer_removes_nothing(dns: FakeDns) -> None:
    dns.set("svc", "10.0.0.1")
    async with Watcher(source(dns), interval=60, min_refresh_interval=0) as watcher:
        watcher.suspect("10.0.0.1")
        del dns.records["svc"]  # NXDOMAIN once
        await watcher.refresh()
        assert watcher.addresses == {"10.0.0.1"}
        dns.set("svc", "10.0.0.1")  # back: the run of absences is broken
        await watcher.refresh()
        dns.set("svc")
        await watcher.refresh()
        assert watcher.addresses == {"10.0.0.1"}


async def test_suspected_address_that_is_still_listed_stays(dns: FakeDns) -> None:
    dns.set("svc", "10.0.0.1")
    async with Watcher(source(dns), interval=60, min_refresh_interval=0) as watcher:
        for _ in range(3):
            watcher.suspect("10.0.0.1")
            await watcher.refresh()
        assert watcher.addresses == {"10.0.0.1"}


async def test_refresh_now_is_rate_limited(dns: FakeDns) -> None:
    dns.set("svc", "10.0.0.1")
    async with Watcher(source(dns), interval=600, min_refresh_interval=2.0) as watcher:
        assert dns.count("svc") == 1  # the first lookup (A only)
        for _ in range(50):
            watcher.refresh_now()
            watcher.suspect("10.0.0.9")
            await asyncio.sleep(0.01)
        await dns.wait_queries("svc", 2, timeout=BOUND)
        # fifty requests in well under one window: one immediate lookup, at most one more at
        # the end of the window
        await asyncio.sleep(2.5)
        assert 2 <= dns.count("svc") <= 3


async def test_events_iterator_ends_when_the_watcher_closes(dns: FakeDns) -> None:
    dns.set("svc", "10.0.0.1")
    watcher = await Watcher(source(dns), interval=60, min_refresh_interval=0)
    events = watcher.events()
    collected: list[WatchEvent] = []

    async def collect() -> None:
        async for event in events:
            collected.append(event)

    task = asyncio.create_task(collect())
    dns.set("svc", "10.0.0.1", "10.0.0.2")
    await watcher.refresh()
    await watcher.close()
    async with asyncio.timeout(BOUND):
        await task
    assert [event.added for event in collected] == [{"10.0.0.2"}]
    with pytest.raises(errors.Closed):
        await watcher.refresh()
    with pytest.raises(errors.Closed):
        await watcher.start()


async def test_swarm_tasks_auto_prefers_the_tasks_name(dns: FakeDns) -> None:
    dns.set("svc", "10.0.0.100")  # the virtual IP
    src = source(dns, swarm_tasks="auto")
    async with Watcher(src, interval=60, min_refresh_interval=0) as watcher:
        assert watcher.addresses == {"10.0.0.100"}
        assert not src.using_tasks
        dns.set("tasks.svc", "10.0.0.11", "10.0.0.12")
        await watcher.refresh()
        assert src.using_tasks
        assert {"10.0.0.11", "10.0.0.12"} <= watcher.addresses
        # the tasks lookup failing now keeps the replica set, it does not jump to the VIP
        dns.mode = "servfail"
        await watcher.refresh()
        assert src.using_tasks
        assert {"10.0.0.11", "10.0.0.12"} <= watcher.addresses


async def test_swarm_tasks_true_asks_only_the_tasks_name(dns: FakeDns) -> None:
    dns.set("svc", "10.0.0.100")
    dns.set("tasks.svc", "10.0.0.11")
    async with Watcher(source(dns, swarm_tasks=True), interval=60) as watcher:
        assert watcher.addresses == {"10.0.0.11"}
        assert dns.count("svc") == 0


async def test_static_source() -> None:
    async with Watcher(StaticSource(["a:1", "b:2"]), interval=60) as watcher:
        assert watcher.addresses == {"a:1", "b:2"}
