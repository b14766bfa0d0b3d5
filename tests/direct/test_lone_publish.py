"""tcp:// ``publish()`` of one message: sent at once in a PUB frame of its own and its ACCEPT
waited for under the dialler's shared deadlines. What is not accepted goes the long way, as a
``publish_many`` copy does: a refused group copy to another member, a copy lost with its
connection to the peer once it is back.

The peer that refuses or drops is a small listener written with the frame codec (``oncue.py``),
so that it does so on cue; the other side is a real bus on real sockets.
"""

from __future__ import annotations

import asyncio

import pytest
from oncue import OnCueListener

import meshbus
from meshbus.channels.direct.dialer import TcpTransport
from meshbus.channels.direct.frames import REFUSE_CLOSING
from meshbus.channels.direct.peer import PUB_FRAME_TARGET
from meshbus.errors import PublishTimeout

pytestmark = pytest.mark.asyncio


async def test_a_refused_lone_publish_goes_to_another_member() -> None:
    async with (
        OnCueListener("refuse").running() as refusing,
        meshbus.connect("memory://lone-refused", listen="tcp://127.0.0.1:0") as member,
        member.subscribe("job.>", group="svc") as sub,
    ):
        port = member._listener.port  # type: ignore[union-attr]
        url = f"tcp://127.0.0.1:{refusing.port},127.0.0.1:{port}?connect_timeout=5"
        async with meshbus.connect(url) as client:
            (dialler,) = client._transports.values()
            assert isinstance(dialler, TcpTransport)
            await asyncio.wait_for(asyncio.gather(*(p.ready.wait() for p in dialler.peers)), 5)
            for n in range(20):
                await client.publish("job.n", str(n).encode(), timeout=10)
        got = [msg.data for msg in await _take(sub, 20)]
    assert sorted(got, key=int) == [str(n).encode() for n in range(20)]
    assert refusing.seen  # round robin sent it some: each was refused and went to the member


async def test_a_lone_publish_lost_with_its_connection_is_sent_again() -> None:
    async with OnCueListener("accept", "drop", "accept").running() as flaky:
        url = f"tcp://127.0.0.1:{flaky.port}?reconnect_min=0.05"
        async with meshbus.connect(url) as client:
            await client.publish("job.a", b"first", timeout=5)  # the route is known after it
            await client.publish("job.a", b"second", timeout=10)  # lost, then sent again
    seen = [(n, pub.data) for n, pub in flaky.seen]
    assert seen == [(0, b"first"), (0, b"second"), (1, b"second")]


async def test_a_lone_publish_never_accepted_times_out() -> None:
    async with OnCueListener("hold").running() as holding:
        url = f"tcp://127.0.0.1:{holding.port}"
        async with meshbus.connect(url, drain_timeout=0.5) as client:
            with pytest.raises(PublishTimeout):
                await client.publish("job.a", b"x", timeout=0.5)  # the long way: the route
            with pytest.raises(PublishTimeout):
                await client.publish("job.a", b"y", timeout=0.5)  # and the lone-publish path
    assert [pub.data for _, pub in holding.seen] == [b"x", b"y"]


async def _take(sub: meshbus.Subscription, count: int) -> list[meshbus.Message]:
    got: list[meshbus.Message] = []
    async with asyncio.timeout(20):
        async for msg in sub:
            await msg.ack()
            got.append(msg)
            if len(got) == count:
                break
    return got


async def test_a_lone_publish_refused_as_closing_is_owed_to_that_peer() -> None:
    # Refused because its listener is closing: like one lost with the connection, it is sent
    # there again (to whoever takes over) rather than dropped as having no subscriber.
    async with (
        OnCueListener("refuse", "accept", code=REFUSE_CLOSING).running() as closing,
        meshbus.connect(f"tcp://127.0.0.1:{closing.port}") as client,
    ):
        await client.publish("job.a", b"x", timeout=10)
    assert [pub.data for _, pub in closing.seen] == [b"x", b"x"]


async def test_a_large_batch_goes_in_frames_the_listener_reads_in_place() -> None:
    # 64 x 16 KiB: frames of at most PUB_FRAME_TARGET bytes (each read where it lies and
    # ACCEPTed while the next arrives); a message larger than that still goes, alone.
    async with (
        OnCueListener("accept").running() as listener,
        meshbus.connect(f"tcp://127.0.0.1:{listener.port}") as client,
    ):
        await client.publish_many([("job.a", bytes(16 * 1024))] * 64, timeout=10)
        frames = listener.frames
        await client.publish_many([("job.big", bytes(PUB_FRAME_TARGET))], timeout=10)
    assert frames >= 64 * 16 * 1024 // PUB_FRAME_TARGET + 1
    assert listener.frames == frames + 1
    assert [pub.data for _, pub in listener.seen[-1:]] == [bytes(PUB_FRAME_TARGET)]
    assert len(listener.seen) == 65
