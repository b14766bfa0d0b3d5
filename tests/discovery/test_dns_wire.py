"""The DNS wire format and the pieces that need no server: property-based parser tests,
resolv.conf, static sources and source specs."""

from __future__ import annotations

from pathlib import Path

import pytest
from dnslib import QTYPE, RR, DNSRecord
from hypothesis import given, settings
from hypothesis import strategies as st

from meshbus import errors
from meshbus.discovery import (
    DnsSource,
    Nameserver,
    StaticSource,
    Watcher,
    nameservers_from_resolv_conf,
    sort_addresses,
    source_from_spec,
)
from meshbus.discovery._wire import TYPE_A, TYPE_AAAA, build_query, parse_response


def _answer(zone: str, qtype: str = "A", name: str = "svc.example") -> bytes:
    request = DNSRecord.question(name, qtype)
    reply = request.reply()
    for record in RR.fromZone(zone):
        reply.add_answer(record)
    packed: bytes = reply.pack()
    return packed


def test_query_is_what_dnslib_reads() -> None:
    record = DNSRecord.parse(build_query(0x1234, "Pricing.Example.", TYPE_AAAA))
    assert record.header.id == 0x1234
    assert record.header.rd == 1
    assert str(record.q.qname) == "Pricing.Example."
    assert record.q.qtype == QTYPE.AAAA


def test_compressed_names_and_cname_chains() -> None:
    data = _answer(
        "svc.example. 60 CNAME real.example.\n"
        "real.example. 60 A 10.0.0.1\n"
        "real.example. 60 A 10.0.0.2\n"
        "other.example. 60 A 10.6.6.6\n"
    )
    response = parse_response(data)
    assert response.qname == "svc.example"
    assert response.addresses == ("10.0.0.1", "10.0.0.2")
    assert not response.truncated


def test_aaaa_records() -> None:
    response = parse_response(_answer("svc.example. 60 AAAA fd00::7", "AAAA"))
    assert response.qtype == TYPE_AAAA
    assert response.addresses == ("fd00::7",)


def test_a_record_with_wrong_length_is_malformed() -> None:
    data = bytearray(_answer("svc.example. 60 A 10.0.0.1"))
    data[-6] = 5  # rdlength 4 -> 5: now runs past the end
    with pytest.raises(errors.ProtocolError):
        parse_response(bytes(data))


def test_queries_are_not_responses() -> None:
    with pytest.raises(errors.ProtocolError):
        parse_response(build_query(1, "svc", TYPE_A))


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_never_raise_anything_but_protocol_error(data: bytes) -> None:
    try:
        parse_response(data)
    except errors.ProtocolError:
        pass


@settings(max_examples=1000, deadline=None)
@given(st.data())
def test_mutated_answers_never_raise_anything_but_protocol_error(data: st.DataObject) -> None:
    packet = bytearray(_answer("svc.example. 60 CNAME real.example.\nreal.example. 60 A 10.0.0.1"))
    for _ in range(data.draw(st.integers(1, 6))):
        at = data.draw(st.integers(0, len(packet) - 1))
        packet[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(packet)))
    try:
        parse_response(bytes(packet[:cut]))
    except errors.ProtocolError:
        pass


def test_nameservers_from_resolv_conf(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text(
        "# Docker\nsearch example.internal\nnameserver 127.0.0.11\n"
        "nameserver   fd00::53\nnameserver not-an-ip\n; comment\noptions ndots:0\n"
    )
    assert nameservers_from_resolv_conf(str(conf)) == [
        Nameserver("127.0.0.11", 53),
        Nameserver("fd00::53", 53),
    ]
    assert nameservers_from_resolv_conf(str(tmp_path / "missing")) == []


def test_sort_addresses_is_stable_and_numeric() -> None:
    assert sort_addresses({"10.0.0.10", "fd00::1", "10.0.0.9", "name:1"}) == [
        "10.0.0.9",
        "10.0.0.10",
        "fd00::1",
        "name:1",
    ]


def test_source_specs() -> None:
    static = source_from_spec("static:a:1, b:2")
    assert isinstance(static, StaticSource)
    assert static.addresses == {"a:1", "b:2"}
    dns = source_from_spec("dns:pricing", swarm_tasks="auto")
    assert isinstance(dns, DnsSource)
    assert (dns.name, dns.swarm_tasks) == ("pricing", "auto")
    assert isinstance(source_from_spec("pricing"), DnsSource)
    with pytest.raises(errors.NotSupported):
        source_from_spec("docker:label=app")
    with pytest.raises(errors.ConfigurationError):
        source_from_spec("pricing:7000")
    with pytest.raises(errors.ConfigurationError):
        DnsSource("pricing", swarm_tasks="yes")  # type: ignore[arg-type]


def test_watcher_rejects_bad_options() -> None:
    with pytest.raises(errors.ConfigurationError):
        Watcher(StaticSource([]), jitter=1.5)
    with pytest.raises(errors.ConfigurationError):
        Watcher(StaticSource([]), absent_threshold=0)
