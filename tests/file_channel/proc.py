"""A separate OS process on a file:// channel, for the multi-process tests.

    python proc.py writer URL SUBJECT TAG COUNT
    python proc.py reader URL SUBJECT GROUP OUT STOPFILE READYFILE [ack|hold]
    python proc.py big-writer URL SUBJECT SIZE SLOW
    python proc.py perm-reader URL SUBJECT GROUP OUT COUNT

A reader writes one line per message to OUT (``id attempt pid``), flushed at once, and
closes cleanly when STOPFILE appears; ``hold`` receives without settling and then sleeps,
waiting to be killed. ``big-writer`` publishes one SIZE-byte payload; with SLOW=1 its disk
writes are slowed (1 MiB at a time, 5 ms each) so a test can kill it mid-write.
``perm-reader`` drops root privileges first (uid/gid 65534) when run as root.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

import meshbus


async def writer(url: str, subject: str, tag: str, count: int) -> None:
    async with meshbus.connect(url) as bus:
        for start in range(0, count, 50):
            batch = [(subject, f"{tag}-{i}") for i in range(start, min(start + 50, count))]
            if start % 100 == 0:
                await bus.publish_many(batch)
            else:
                for item in batch:
                    await bus.publish(*item)


async def reader(
    url: str, subject: str, group: str, out: str, stop: str, ready: str, mode: str
) -> None:
    async with (
        meshbus.connect(url) as bus,
        bus.subscribe(subject, group=group, prefetch=16) as sub,
    ):
        with open(ready, "w"):  # noqa: ASYNC230 - a test helper process
            pass
        with open(out, "a") as log:  # noqa: ASYNC230
            while not os.path.exists(stop):  # noqa: ASYNC240
                try:
                    msg = await asyncio.wait_for(sub.__anext__(), 0.2)
                except TimeoutError:
                    continue
                log.write(f"{msg.json()} {msg.attempt} {os.getpid()}\n")
                log.flush()
                if mode == "ack":
                    await msg.ack()


async def big_writer(url: str, subject: str, size: int, slow: bool) -> None:
    if slow:
        from meshbus.channels.file import _writer

        real_write = os.write

        def slow_write(fd: int, data: object) -> int:
            time.sleep(0.005)
            return real_write(fd, data)  # type: ignore[arg-type]

        _writer._CHUNK = 1 << 20  # type: ignore[attr-defined]
        _writer.os.write = slow_write  # type: ignore[attr-defined]
    payload = os.urandom(1024) * (size // 1024)
    async with meshbus.connect(url) as bus:
        await bus.publish(subject, payload)


async def perm_reader(url: str, subject: str, group: str, out: str, count: int) -> None:
    if os.geteuid() == 0:
        # Import what the channel needs first: the standard library may live under /root.
        import meshbus.channels.file

        meshbus.connect(url)  # loads the entry point; not started
        os.setgid(65534)
        os.setuid(65534)
    async with meshbus.connect(url) as bus, bus.subscribe(subject, group=group) as sub:
        with open(out, "w") as log:  # noqa: ASYNC230
            for _ in range(count):
                msg = await asyncio.wait_for(sub.__anext__(), 20)
                log.write(f"{msg.data.decode()}\n")
                log.flush()
                await msg.ack()


def main(argv: list[str]) -> None:
    mode, url, subject, *rest = argv
    if mode == "writer":
        asyncio.run(writer(url, subject, rest[0], int(rest[1])))
    elif mode == "reader":
        asyncio.run(reader(url, subject, rest[0], rest[1], rest[2], rest[3], rest[4]))
    elif mode == "big-writer":
        asyncio.run(big_writer(url, subject, int(rest[0]), rest[1] == "1"))
    elif mode == "perm-reader":
        asyncio.run(perm_reader(url, subject, rest[0], rest[1], int(rest[2])))
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main(sys.argv[1:])
