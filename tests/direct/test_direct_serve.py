"""``bus.serve`` behind a tcp:// listener: a handler starts in the read callback of the
connection its request came on, and carries on in its worker task once it waits."""

from __future__ import annotations

import asyncio
import inspect
import random
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

import meshbus
from meshbus import Bus, Message
from meshbus.testing.brokers import free_port

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def server() -> AsyncIterator[Bus]:
    """A bus whose only channel for subscriptions is its tcp:// listener."""
    address = f"tcp://127.0.0.1:{free_port()}"
    async with meshbus.connect(address, listen=address) as bus:
        yield bus


def _in_read_callback() -> bool:
    return any(frame.function == "buffer_updated" for frame in inspect.stack())


async def test_a_handler_starts_in_the_read_callback(server: Bus) -> None:
    """Until it first waits, the handler runs where the request was read, as its worker task;
    after, in the worker task alone."""
    where: list[tuple[bool, bool, bool]] = []

    async def handler(msg: Message) -> bytes:
        task = asyncio.current_task()
        before = _in_read_callback()
        await asyncio.sleep(0)
        where.append((before, _in_read_callback(), asyncio.current_task() is task))
        return msg.data

    port = server._listener.port  # type: ignore[union-attr]
    async with (
        server.serve("rpc.echo", handler, group="svc"),
        meshbus.connect(f"tcp://127.0.0.1:{port}") as client,
    ):
        assert (await client.request("rpc.echo", b"hi", timeout=10)).data == b"hi"
    assert where == [(True, False, True)]


async def test_pipelined_requests_each_get_their_answer(server: Bus) -> None:
    """Two hundred requests at once to one worker, half of whose handlers wait on the way:
    each gets its own answer, and the handlers ran one at a time."""
    running = 0
    overlapped = False

    async def handler(msg: Message) -> int:
        nonlocal running, overlapped
        running += 1
        overlapped = overlapped or running > 1
        n: int = msg.json()
        if n % 2:
            await asyncio.sleep(random.random() / 1000)
        running -= 1
        return n * 2

    port = server._listener.port  # type: ignore[union-attr]
    async with (
        server.serve("rpc.double", handler, group="svc"),
        meshbus.connect(f"tcp://127.0.0.1:{port}") as client,
    ):
        replies = await asyncio.gather(
            *(client.request("rpc.double", n, timeout=30) for n in range(200))
        )
    assert [reply.json() for reply in replies] == [n * 2 for n in range(200)]
    assert not overlapped


async def test_published_messages_are_accepted_and_handled(server: Bus) -> None:
    """publish_many to a served group returns once the listener accepted every message; each
    is handled once."""
    seen: list[int] = []
    all_in = asyncio.Event()

    def handler(msg: Message) -> None:
        seen.append(msg.json())
        if len(seen) == 1000:
            all_in.set()

    port = server._listener.port  # type: ignore[union-attr]
    async with (
        server.serve("jobs.new", handler, group="workers"),
        meshbus.connect(f"tcp://127.0.0.1:{port}") as client,
    ):
        await client.publish_many([("jobs.new", n) for n in range(1000)])
        await asyncio.wait_for(all_in.wait(), 10)
    assert seen == list(range(1000))


async def test_requests_queued_for_more_than_one_group_are_answered(server: Bus) -> None:
    """A request that reaches a broadcast subscriber, or two groups, goes the general way (its
    reply found by its reply-to token): answered once, by the first to respond, and nothing
    stays registered for it."""

    def answer(tag: str) -> meshbus.Handler:
        def handler(msg: Message) -> str:
            return tag

        return handler

    port = server._listener.port  # type: ignore[union-attr]
    async with (
        server.serve("rpc.wide", answer("everyone")),
        server.serve("rpc.two", answer("a"), group="a"),
        server.serve("rpc.two", answer("b"), group="b"),
        meshbus.connect(f"tcp://127.0.0.1:{port}") as client,
    ):
        assert (await client.request("rpc.wide", b"?", timeout=10)).json() == "everyone"
        assert (await client.request("rpc.two", b"?", timeout=10)).json() in ("a", "b")
        await asyncio.sleep(0.1)  # the second group's answer, sent nowhere
        assert not server._listener._hub.waiting_replies()  # type: ignore[union-attr]
