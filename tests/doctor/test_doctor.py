"""meshbus doctor against a real DNS server and real sockets on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from meshbus.__main__ import main
from meshbus.doctor import diagnose, render
from meshbus.testing.brokers import free_port
from meshbus.testing.dns import FakeDns, running_dns


@pytest_asyncio.fixture
async def dns() -> AsyncIterator[FakeDns]:
    async with running_dns() as server:
        yield server


@pytest_asyncio.fixture
async def listening() -> AsyncIterator[int]:
    """A port on 127.0.0.1 that accepts connections."""

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


def closed_port() -> int:
    return free_port()  # nothing listens on it


def levels(findings: list[object]) -> list[str]:
    return [f.level for f in findings]  # type: ignore[attr-defined]


@pytest.mark.asyncio
async def test_a_healthy_peer(dns: FakeDns, listening: int) -> None:
    dns.set("pricing", "127.0.0.1")
    findings = await diagnose(
        [f"tcp://pricing:{listening}"], nameserver=dns.nameserver, container=False, probe_bytes=0
    )
    assert levels(findings) == ["ok", "ok"]
    assert "resolves to 127.0.0.1" in findings[0].message
    assert "accepts connections" in findings[1].message


@pytest.mark.asyncio
async def test_a_name_that_does_not_resolve(dns: FakeDns) -> None:
    (finding,) = await diagnose(["nats://nats:4222"], nameserver=dns.nameserver, container=False)
    assert finding.level == "fail"
    assert "'nats' does not resolve" in finding.message
    assert "same Docker network" in finding.fix


@pytest.mark.asyncio
async def test_a_port_that_does_not_answer(dns: FakeDns) -> None:
    dns.set("kafka", "127.0.0.1")
    port = closed_port()
    findings = await diagnose([f"kafka://kafka:{port}"], nameserver=dns.nameserver, container=False)
    assert levels(findings) == ["ok", "fail"]
    assert f"127.0.0.1:{port} does not answer" in findings[1].message
    assert "0.0.0.0" in findings[1].fix


@pytest.mark.asyncio
async def test_localhost_inside_a_container(dns: FakeDns, listening: int) -> None:
    findings = await diagnose(
        [f"tcp://localhost:{listening}"], nameserver=dns.nameserver, container=True, docker=False
    )
    assert findings[0].level == "warn"
    assert "means this container itself" in findings[0].message


@pytest.mark.asyncio
async def test_the_default_bridge_is_named(tmp_path: Path) -> None:
    bridge = tmp_path / "resolv.conf"
    bridge.write_text("nameserver 127.0.0.1\n")  # what the default bridge copies from the host
    findings = await diagnose(
        ["memory://app"], resolv_conf=str(bridge), container=True, docker=False, timeout=0.5
    )
    assert findings[0].level == "fail"
    assert "default bridge" in findings[0].message
    assert "user-defined network" in findings[0].fix
    user_net = tmp_path / "user.conf"
    user_net.write_text("nameserver 127.0.0.11\noptions ndots:0\n")
    findings = await diagnose(
        ["memory://app"], resolv_conf=str(user_net), container=True, docker=False
    )
    assert findings[0].level == "ok"


@pytest.mark.asyncio
async def test_dns_url_with_one_address_hints_at_swarm(dns: FakeDns, listening: int) -> None:
    dns.set("workers", "127.0.0.1")
    findings = await diagnose(
        [f"dns://workers:{listening}"], nameserver=dns.nameserver, container=False
    )
    assert "tasks.workers" in " ".join(f.fix for f in findings)


@pytest.mark.asyncio
async def test_configuration_from_the_environment(tmp_path: Path) -> None:
    (finding,) = await diagnose(environ={}, container=False)
    assert finding.level == "fail"
    assert "MESHBUS_URL" in finding.message
    findings = await diagnose(
        environ={"MESHBUS_URL": "memory://a", "MESHBUS_ROUTES": f"x.>=file://{tmp_path}"},
        container=False,
    )
    assert levels(findings) == ["ok", "ok", "ok"]
    (missing,) = await diagnose([f"file://{tmp_path}/nope"], container=False)
    assert missing.level == "fail"


@pytest.mark.asyncio
async def test_render_text_and_json(dns: FakeDns) -> None:
    findings = await diagnose(["nats://nats:4222"], nameserver=dns.nameserver, container=False)
    text = render(findings)
    assert text.startswith("[FAIL] nats://nats:4222:")
    assert "fix:" in text
    assert '"level": "fail"' in render(findings, as_json=True)


def test_the_command_exits_non_zero_when_something_is_wrong(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.delenv("MESHBUS_URL", raising=False)
    user_network = tmp_path / "resolv.conf"
    user_network.write_text("nameserver 127.0.0.11\n")
    conf = ["--resolv-conf", str(user_network), "--no-docker"]
    assert main(["doctor", *conf, f"file://{tmp_path}"]) == 0
    assert main(["doctor", *conf, f"file://{tmp_path}/missing"]) == 1
    assert "not a directory" in capsys.readouterr().out
