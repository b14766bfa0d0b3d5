"""A direct-channel listener written with the frame codec, which answers each PUB frame on cue,
for tests of what a dialler does with PUBs that are refused, held or dropped."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from meshbus.channels.direct.frames import (
    DEFAULT_MAX_FRAME,
    REFUSE_NO_SUBSCRIBER,
    Accept,
    FrameDecoder,
    Hello,
    Interest,
    Pub,
    Pubs,
    Refuse,
    encode,
)


class OnCueListener:
    """Serves one group interest on ``job.>``. Each PUB frame it gets takes its cue from
    ``plan`` in turn (the last one repeats): ``accept`` it, ``refuse`` it (with ``code``),
    ``hold`` it without an answer, or ``drop`` the connection without a word."""

    def __init__(self, *plan: str, code: int = REFUSE_NO_SUBSCRIBER) -> None:
        self.plan = list(plan)
        self.code = code  # the REFUSE code it gives
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
                                refuse = Refuse(pub.seq, self.code, "not here")
                                writer.write(b"".join(encode(refuse)))
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
