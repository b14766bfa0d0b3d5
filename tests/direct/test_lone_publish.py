"""tcp:// ``publish()`` of one message: sent at once in a PUB frame of its own and its ACCEPT
waited for under the dialler's shared deadlines. What is not accepted goes the long way, as a
``publish_many`` copy does: a refused group copy to another member, a copy lost with its
connection to the peer once it is back.

The peer that refuses or drops is a small listener written here with the frame codec, so that
it does so on cue; the other side is a real bus on real sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

import meshbus
from meshbus.channels.direct.dialer import TcpTransport
from meshbus.channels.direct.frames import (
    DEFAULT_MAX_FRAME,
    Accept,
    FrameDecoder,
    Hello,
    Interest,
    Pub,
    Pubs,
    Refuse,
    encode,
)
from meshbus.errors import PublishTimeout

pytestmark = pytest.mark.asyncio


class OnCueListener:
    """Serves one group interest on ``job.>``. Each PUB frame it gets takes its cue from
    ``plan`` in turn (the last one repeats): ``accept`` it, ``refuse`` it, ``hold`` it without
    an answer, or ``drop`` the connection without a word."""

    def __init__(self, *plan: str) -> None:
        self.plan = list(plan)
        self.seen: list[tuple[int, Pub]] = []  # (connection number, message)
        self.connections = 0
        self.frames = 0
        self.server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number = self.connections
        self.connections += 1
        decoder = FrameDecoder(DEFAULT_MAX_FRAME)
        hello = Hello(
            node="on-cue",
            max_frame=DEFAULT_MAX_FRAME,
            credit=1000,
            interests=(Interest(1, "job.>", "svc"),),
        )
        greeted = False
        try:
            while data := await reader.read(65536):
                for frame in decoder.feed(data):
                    if isinstance(frame, Hello) and not greeted:
                        writer.write(b"".join(encode(hello)))
                        greeted = True
                    elif isinstance(frame, Pubs):
                        for pub in frame.messages:
                            self.seen.append((number, pub))
                        last = frame.messages[-1].seq
                        behaviour = self.plan[min(self.frames, len(self.plan) - 1)]
                        self.frames += 1
                        if behaviour == "drop":
                            writer.transport.abort()
                            return
                        if behaviour == "hold":
                            continue
                        if behaviour == "refuse":
                            for pub in frame.messages:
                                writer.write(b"".join(encode(Refuse(pub.seq, 1, "not here"))))
                        writer.write(b"".join(encode(Accept(last))))
        except ConnectionError:
            pass
        finally:
            writer.close()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[OnCueListener]:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        try:
            yield self
        finally:
            self.server.close()


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
