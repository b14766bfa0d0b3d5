"""resolve() and lookup() against a real DNS server on loopback, and against broken ones."""

from __future__ import annotations

import struct
from collections.abc import Awaitable, Callable

import pytest
from dnslib import RR, DNSRecord

from meshbus import errors
from meshbus.discovery import Nameserver, lookup, resolve
from meshbus.testing.dns import FakeDns

RawStart = Callable[[Callable[[bytes], list[bytes]]], Awaitable[Nameserver]]

pytestmark = pytest.mark.asyncio


async def test_a_records(dns: FakeDns) -> None:
    dns.set("svc", "10.0.0.3", "10.0.0.1", "10.0.0.2")
    assert await resolve("svc", nameserver=dns.nameserver) == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]


async def test_a_and_aaaa_sorted_ipv4_first(dns: FakeDns) -> None:
    dns.set("svc", "fd00::2", "10.0.0.9", "fd00::1", "10.0.0.10")
    found = await resolve("svc.", nameserver=dns.nameserver)
    assert found == ["10.0.0.9", "10.0.0.10", "fd00::1", "fd00::2"]
    assert await resolve("svc", nameserver=dns.nameserver, family="ipv6") == ["fd00::1", "fd00::2"]
    assert await resolve("svc", nameserver=dns.nameserver, family="ipv4") == [
        "10.0.0.9",
        "10.0.0.10",
    ]


async def test_names_are_case_insensitive(dns: FakeDns) -> None:
    dns.set("pricing", "10.0.0.1")
    assert await resolve("PriCing", nameserver=dns.nameserver) == ["10.0.0.1"]


async def test_every_call_asks_again_no_cache(dns: FakeDns) -> None:
    dns.set("svc", "10.0.0.1")
    assert await resolve("svc", nameserver=dns.nameserver) == ["10.0.0.1"]
    dns.set("svc", "10.0.0.2")
    assert await resolve("svc", nameserver=dns.nameserver) == ["10.0.0.2"]
    assert dns.count("svc") == 4  # A and AAAA, twice


async def test_nxdomain_is_a_definite_answer(dns: FakeDns) -> None:
    with pytest.raises(errors.NameNotFound) as caught:
        await resolve("missing", nameserver=dns.nameserver)
    assert caught.value.nxdomain
    answer = await lookup("missing", nameserver=dns.nameserver)
    assert answer.addresses == ()
    assert answer.nxdomain


async def test_no_records_is_a_definite_answer(dns: FakeDns) -> None:
    dns.set("empty")
    with pytest.raises(errors.NameNotFound) as caught:
        await resolve("empty", nameserver=dns.nameserver)
    assert not caught.value.nxdomain
    assert isinstance(caught.value, LookupError)


@pytest.mark.parametrize(("mode", "rcode"), [("servfail", 2), ("refused", 5)])
async def test_servfail_and_refused_are_failed_lookups(dns: FakeDns, mode: str, rcode: int) -> None:
    dns.set("svc", "10.0.0.1")
    dns.mode = mode
    with pytest.raises(errors.LookupFailed) as caught:
        await resolve("svc", nameserver=dns.nameserver)
    assert caught.value.rcode == rcode
    assert not isinstance(caught.value, errors.NameNotFound)


async def test_silent_server_times_out(dns: FakeDns) -> None:
    dns.set("svc", "10.0.0.1")
    dns.mode = "silent"
    with pytest.raises(errors.LookupTimeout) as caught:
        await resolve("svc", nameserver=dns.nameserver, timeout=0.3)
    assert isinstance(caught.value, TimeoutError)
    assert isinstance(caught.value, errors.LookupFailed)


async def test_truncated_answer_is_asked_again_over_tcp(dns: FakeDns) -> None:
    many = [f"10.1.{i // 250}.{i % 250 + 1}" for i in range(60)]
    dns.set("big", *many)
    dns.truncate.add("big")
    found = await resolve("big", nameserver=dns.nameserver, family="ipv4")
    assert sorted(found) == sorted(many)
    assert ("tcp", "big", "A") in dns.queries


async def test_first_failing_nameserver_falls_back_to_the_next(
    dns: FakeDns, raw_dns: RawStart
) -> None:
    dns.set("svc", "10.0.0.1")
    broken = await raw_dns(lambda data: [b"\xff" * 3])
    assert await resolve("svc", nameserver=[broken, dns.nameserver], timeout=0.5) == ["10.0.0.1"]


async def test_literals_and_localhost_need_no_query(dns: FakeDns) -> None:
    assert await resolve("10.1.2.3", nameserver=dns.nameserver) == ["10.1.2.3"]
    assert await resolve("[fd00::1]", nameserver=dns.nameserver) == ["fd00::1"]
    assert await resolve("localhost", nameserver=dns.nameserver) == ["127.0.0.1"]
    assert await resolve("LOCALHOST.", nameserver=dns.nameserver) == ["127.0.0.1"]
    assert dns.queries == []


async def test_a_name_dns_cannot_carry_is_a_configuration_error(dns: FakeDns) -> None:
    with pytest.raises(errors.ConfigurationError):
        await resolve("a..b", nameserver=dns.nameserver)
    with pytest.raises(errors.ConfigurationError):
        await resolve("x" * 64, nameserver=dns.nameserver)


def _reply_to(data: bytes) -> DNSRecord:
    return DNSRecord.parse(data).reply()


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(lambda data: [b"garbage"], id="garbage"),
        pytest.param(lambda data: [data[:2] + b"\x81"], id="own-id-then-cut"),
        pytest.param(lambda data: [_reply_to(data).pack()[:14]], id="cut-in-question"),
        pytest.param(lambda data: [data], id="echoes-the-query"),
        pytest.param(
            lambda data: [
                struct.pack("!H", (struct.unpack("!H", data[:2])[0] + 1) % 65536)
                + _reply_to(data).pack()[2:]
            ],
            id="wrong-id",
        ),
        pytest.param(lambda data: [], id="silent"),
        pytest.param(
            # The id and a header, then a compression pointer that points at itself.
            lambda data: [data[:2] + b"\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00\xc0\x0c"],
            id="pointer-loop",
        ),
    ],
)
async def test_malformed_answers_are_failed_lookups(
    raw_dns: RawStart, answer: Callable[[bytes], list[bytes]]
) -> None:
    server = await raw_dns(answer)
    with pytest.raises(errors.LookupFailed):
        await resolve("svc", nameserver=server, timeout=0.4)


async def test_garbage_before_the_real_answer_is_ignored(raw_dns: RawStart) -> None:
    def answer(data: bytes) -> list[bytes]:
        reply = _reply_to(data)
        reply.add_answer(*RR.fromZone("svc. 60 A 10.9.9.9"))
        wrong = struct.pack("!H", (reply.header.id + 1) % 65536) + reply.pack()[2:]
        return [b"x", wrong, reply.pack()]

    server = await raw_dns(answer)
    assert await resolve("svc", nameserver=server, family="ipv4", timeout=2) == ["10.9.9.9"]
