"""nats:// on the wire: ``MeshClient``'s own header and delivery paths (``meshbus_nats._wire``)
against a real server and plain nats-py clients."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import nats
import pytest
import pytest_asyncio
from nats.aio.client import Client

import meshbus
from meshbus.headers import KEY, MESSAGE_ID
from meshbus.testing.brokers import NatsServer
from meshbus.testing.proxy import TcpProxy
from meshbus_nats import NatsTransport
from meshbus_nats._wire import FAST, parse_header_block


def subject() -> str:
    return f"w{uuid.uuid4().hex[:10]}.x"


@pytest_asyncio.fixture
async def proxy(nats_server: NatsServer) -> AsyncIterator[TcpProxy]:
    """A recording proxy in front of the shared server."""
    async with TcpProxy(nats_server.host, nats_server.port) as started:
        yield started


def test_this_nats_py_has_the_internals_the_fast_paths_use() -> None:
    # If this fails after a nats-py upgrade, the adapter still works (as plain nats-py);
    # only the faster paths and the flush fix are off. Check _wire against the new version.
    assert FAST


@pytest.mark.asyncio
async def test_subscribe_returns_once_the_server_has_the_subscription(proxy: TcpProxy) -> None:
    """The PING that confirms a subscription follows its SUB on the wire (nats-py alone
    writes the PING first, so the PONG can come before the server has the SUB)."""
    name = subject()
    async with (
        meshbus.connect(f"nats://{proxy.host}:{proxy.port}") as bus,
        bus.subscribe(name, group="svc"),
    ):
        sent = bytes(proxy.sent)
        last_sub = sent.rfind(f"SUB _mbrpc.{name} svc".encode())
        assert last_sub >= 0
        assert sent.find(b"PING\r\n", last_sub) > last_sub


@pytest.mark.asyncio
async def test_meshbus_messages_read_as_plain_nats(nats_server: NatsServer) -> None:
    """A plain nats-py subscriber gets the payload as is, the user's headers and ``mb-id``."""
    name = subject()
    plain = await nats.connect(nats_server.url)
    try:
        sub = await plain.subscribe(name)
        await plain.flush()
        async with meshbus.connect(nats_server.url) as bus:
            first = await bus.publish(name, b"bare")
            second = await bus.publish(name, b"dressed", headers={"tenant": "a", "n": "é"})
        one, two = await sub.next_msg(5), await sub.next_msg(5)
        assert (one.data, one.headers) == (b"bare", {MESSAGE_ID: first})
        assert (two.data, two.headers) == (
            b"dressed",
            {MESSAGE_ID: second, "tenant": "a", "n": "é"},
        )
    finally:
        await plain.close()


@pytest.mark.asyncio
async def test_plain_nats_messages_reach_meshbus(nats_server: NatsServer) -> None:
    """Plain publishes (without headers, with headers, with a status-like block) arrive in
    order with their headers; without ``mb-id`` the id is empty."""
    name = subject()
    plain = await nats.connect(nats_server.url)
    try:
        async with meshbus.connect(nats_server.url) as bus, bus.subscribe(name) as sub:
            await plain.publish(name, b"1")
            await plain.publish(name, b"2", headers={"a": "b", MESSAGE_ID: "given"})
            await plain.publish(name, b"3", headers={"x": " padded "})
            await plain.publish(name, b"4", headers={KEY: "k"})
            await plain.publish(name, b"5", headers={MESSAGE_ID: "\u00e9t\u00e9"})
            await plain.flush()
            got = [await anext(sub) for _ in range(5)]
        assert [m.data for m in got] == [b"1", b"2", b"3", b"4", b"5"]
        assert [m.id for m in got] == ["", "given", "", "", "\u00e9t\u00e9"]
        assert [m.key for m in got] == [None, None, None, "k", None]
        assert got[0].headers == {}
        assert got[1].headers == {"a": "b", MESSAGE_ID: "given"}
        assert got[2].headers == {"x": "padded"}  # nats-py strips values; so do we
    finally:
        await plain.close()


@pytest.mark.asyncio
async def test_a_full_buffer_keeps_the_order(nats_server: NatsServer) -> None:
    """Past ``buffer`` messages, deliveries wait in nats-py's queue; nothing is lost or
    reordered when the direct path takes over again."""
    name = subject()
    async with (
        meshbus.connect(nats_server.url) as pub,
        meshbus.connect(f"{nats_server.url}?buffer=8") as con,
        con.subscribe(name) as sub,
    ):
        for i in range(300):
            await pub.publish(name, str(i).encode())
        got = []
        async for msg in sub:
            got.append(int(msg.data))
            await msg.ack()
            if len(got) % 50 == 0:
                await asyncio.sleep(0.01)  # fall behind now and then
            if len(got) == 300:
                break
        assert got == list(range(300))


@pytest.mark.asyncio
async def test_without_the_fast_paths_everything_still_works(nats_server: NatsServer) -> None:
    """With ``fast`` off (an unknown nats-py), MeshClient is plain nats-py."""
    name = subject()
    async with meshbus.connect(nats_server.url) as bus:
        transport = bus._transport_for(name)
        assert isinstance(transport, NatsTransport)
        transport.client.fast = False
        async with bus.subscribe(name) as sub, bus.subscribe(name, group="g") as member:
            sent = await bus.publish(name, b"x", headers={"h": "v"})
            for msg in (await anext(sub), await anext(member)):
                assert (msg.data, msg.id, msg.headers["h"]) == (b"x", sent, "v")
                await msg.ack()
            request = asyncio.create_task(bus.request(name, b"q", timeout=5))
            asked = await anext(member)
            await asked.respond(b"a")
            assert (await request).data == b"a"


@pytest.mark.parametrize(
    "block",
    [
        b"NATS/1.0\r\nmb-id: 1a-2\r\n\r\n",
        b"NATS/1.0\r\nmb-id:1a-2 \r\n\r\n",
        b"NATS/1.0\r\nmb-id: x\r\nNats-Msg-Id: x\r\n\r\n",
        b"NATS/1.0\r\nA: 1\r\nA: 2\r\n\r\n",
        b"NATS/1.0\r\nbad name: 1\r\nok:\t2\r\n\r\n",
        b"NATS/1.0\r\nno colon\r\nk: v: w\r\n\r\n",
        "NATS/1.0\r\nk: ünï\r\n\r\n".encode(),
    ],
)
def test_header_blocks_parse_as_nats_py_parses_them(block: bytes) -> None:
    assert parse_header_block(block) == Client._parse_header_lines(block[10:])


def test_status_lines_and_other_encodings_are_left_to_nats_py() -> None:
    assert parse_header_block(b"NATS/1.0 503\r\n\r\n") is None
    assert parse_header_block(b"NATS/1.0\r\nk: \xff\r\n\r\n") is None


@pytest.mark.asyncio
async def test_status_replies_still_reach_nats_py(nats_server: NatsServer) -> None:
    """A request nobody answers gets the server's 503 through nats-py's own path."""
    async with meshbus.connect(nats_server.url) as bus:
        transport = bus._transport_for("w.x")
        assert isinstance(transport, NatsTransport)
        with pytest.raises(nats.errors.NoRespondersError):
            await transport.client.request(subject(), b"", timeout=5)
