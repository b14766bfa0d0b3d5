"""file:// with real files and separate OS processes: competing readers, crashed readers,
crashed writers."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import meshbus
from meshbus.testing.harness import Session

PROC = str(Path(__file__).with_name("proc.py"))


def spawn(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, PROC, *args])


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test started; any still running at the end are killed (by pid)."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def wait_for(predicate: object, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def lines(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("notify", ["inotify", "poll"])
def test_many_writers_and_readers(
    tmp_path: Path, procs: list[subprocess.Popen[bytes]], notify: str
) -> None:
    """Three writer processes, two groups of two reader processes each: every message
    reaches each group exactly once, none lost, none seen twice after ack."""
    url = f"file://{tmp_path}?notify={notify}&lease=5"
    stop = tmp_path / "stop"
    writers, per_writer = 3, 300

    async def declare() -> None:
        async with meshbus.connect(url) as bus:
            for group in ("g1", "g2"):
                await bus.declare_group("mp.work", group)

    asyncio.run(declare())
    outs: dict[str, list[Path]] = {"g1": [], "g2": []}
    for group in outs:
        for n in range(2):
            out, ready = tmp_path / f"{group}-{n}.out", tmp_path / f"{group}-{n}.ready"
            outs[group].append(out)
            procs.append(
                spawn("reader", url, "mp.work", group, str(out), str(stop), str(ready), "ack")
            )
    writer_procs = [spawn("writer", url, "mp.work", f"w{w}", str(per_writer)) for w in range(3)]
    procs.extend(writer_procs)
    for proc in writer_procs:
        assert proc.wait(120) == 0
    expected = sorted(f"w{w}-{i}" for w in range(writers) for i in range(per_writer))

    def received(group: str) -> list[str]:
        return [line[0] for out in outs[group] for line in lines(out)]

    for group in outs:
        wait_for(lambda g=group: len(received(g)) >= len(expected), 60, f"group {group}")
    time.sleep(1.0)  # a duplicate would show up now
    stop.touch()
    for proc in procs:
        assert proc.wait(30) == 0
    for group in outs:
        got = received(group)
        assert sorted(got) == expected, f"{group}: lost or duplicated messages"
        per_reader = [len(lines(out)) for out in outs[group]]
        assert sum(per_reader) == len(expected)
    assert not any((tmp_path / "tmp").iterdir()), "temp files left behind"


def test_killed_reader_loses_its_claims_after_the_lease(
    tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    """A reader SIGKILLed while holding claims: after the lease, its messages come again to
    another member, with the attempt counted."""
    url = f"file://{tmp_path}?lease=2"
    out, stop, ready = tmp_path / "held.out", tmp_path / "stop", tmp_path / "ready"

    async def scenario() -> None:
        async with meshbus.connect(url) as bus:
            await bus.declare_group("crash.jobs", "workers")
            procs.append(
                spawn(
                    "reader", url, "crash.jobs", "workers", str(out), str(stop), str(ready), "hold"
                )
            )
            await bus.publish_many([("crash.jobs", f"job-{i}") for i in range(5)])
            while len(lines(out)) < 5:  # noqa: ASYNC110 - another process writes the file
                await asyncio.sleep(0.05)
            assert {line[1] for line in lines(out)} == {"1"}
            os.kill(procs[-1].pid, signal.SIGKILL)
            procs[-1].wait(10)
            killed_at = time.monotonic()
            async with bus.subscribe("crash.jobs", group="workers") as sub:
                await Session.nothing(sub, within=1.0)  # still leased to the dead reader
                got = await Session.take(sub, 5, within=20)
            assert time.monotonic() - killed_at >= 2.0
            assert sorted(m.json() for m in got) == [f"job-{i}" for i in range(5)]
            assert {m.attempt for m in got} == {2}
            assert not list((tmp_path / "groups").glob("workers@*/claims/*/*"))

    asyncio.run(scenario())


def test_killed_writer_leaves_no_partial_message(
    tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    """A writer SIGKILLed in the middle of a 256 MiB message: readers never see any of it;
    its temp file is removed once its lease ends. A whole one from another process arrives
    byte for byte."""
    url = f"file://{tmp_path}?lease=1.5"
    size = 256 << 20

    async def scenario() -> None:
        async with meshbus.connect(url) as bus:
            async with bus.subscribe("big.blob", group="readers") as sub:
                procs.append(spawn("big-writer", url, "big.blob", str(size), "1"))
                temp_dir = tmp_path / "tmp"
                partial: list[Path] = []
                while not partial:
                    partial = [p for p in temp_dir.glob("m.*") if 0 < p.stat().st_size < size // 2]
                    await asyncio.sleep(0.005)
                os.kill(procs[-1].pid, signal.SIGKILL)
                procs[-1].wait(10)
                assert partial[0].exists()
                await Session.nothing(sub, within=1.0)
                for _ in range(200):
                    if not partial[0].exists():
                        break
                    await asyncio.sleep(0.05)
                assert not partial[0].exists(), "the dead writer's temp file was not removed"
                await Session.nothing(sub, within=0.5)

                procs.append(spawn("big-writer", url, "big.blob", str(size), "0"))
                (msg,) = await Session.take(sub, 1, within=120)
                assert len(msg.data) == size
                block = msg.data[:1024]
                assert msg.data == block * (size // 1024)
            assert procs[-1].wait(60) == 0

    asyncio.run(scenario())


def test_groups_registered_in_one_process_are_fanned_out_to_by_another(
    tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    """A group declared by this process receives what a writer process publishes later."""
    url = f"file://{tmp_path}"

    async def declare() -> None:
        async with meshbus.connect(url) as bus:
            await bus.declare_group("fan.>", "late")

    asyncio.run(declare())
    procs.append(spawn("writer", url, "fan.x", "w", "10"))
    assert procs[-1].wait(60) == 0

    async def collect() -> collections.Counter[str]:
        async with meshbus.connect(url) as bus, bus.subscribe("fan.>", group="late") as sub:
            return collections.Counter(m.json() for m in await Session.take(sub, 10))

    assert asyncio.run(collect()) == collections.Counter(f"w-{i}" for i in range(10))
