"""The doctor's parts on their own: explanations over recorded Engine API answers, the API
client against a real HTTP server on a unix socket, and the MTU probe against real listeners
on loopback."""

from __future__ import annotations

import asyncio
import http.server
import socketserver
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

import meshbus
from meshbus.doctor import diagnose, render
from meshbus.doctor._engine import Engine, container_ids_from_proc
from meshbus.doctor._mtu import interface_mtus, mtu_findings, probe
from meshbus.doctor._peers import (
    Container,
    explain_unanswered,
    explain_unresolved,
    shared_networks_by_label,
)
from meshbus.doctor._report import Finding
from meshbus.errors import DockerEngineError
from meshbus.testing.brokers import free_port

ID_ME = "a" * 64
ID_PEER = "b" * 64


def endpoint(network: str, ip: str, aliases: list[str] | None = None, mac: str = "") -> Any:
    return {
        "NetworkID": f"id-{network}",
        "IPAddress": ip,
        "Aliases": aliases,
        "MacAddress": mac,
    }


def inspected(
    id_: str, name: str, networks: dict[str, Any], labels: dict[str, str] | None = None
) -> Container:
    """The shape of GET /containers/{id}/json."""
    return Container.from_api(
        {
            "Id": id_,
            "Name": f"/{name}",
            "State": {"Status": "running"},
            "Config": {"Labels": labels or {}, "Hostname": id_[:12]},
            "NetworkSettings": {"Networks": networks},
        }
    )


def listed(
    id_: str, name: str, state: str, networks: dict[str, Any], labels: dict[str, str]
) -> Container:
    """The shape of an item of GET /containers/json."""
    return Container.from_api(
        {
            "Id": id_,
            "Names": [f"/{name}"],
            "State": state,
            "Labels": labels,
            "NetworkSettings": {"Networks": networks},
        }
    )


ME = inspected(
    ID_ME,
    "shop-app-1",
    {
        "shop_front": endpoint(
            "shop_front", "172.20.0.2", ["app", "aaaaaaaaaaaa"], "02:42:ac:14:00:02"
        )
    },
    {"com.docker.compose.project": "shop", "meshbus.peer": "shop"},
)


def test_both_shapes_of_container_answers_parse() -> None:
    assert ME.name == "shop-app-1"
    assert ME.state == "running"
    assert ME.network_names == ["shop_front"]
    assert ME.networks[0].aliases == ("app", "aaaaaaaaaaaa")
    peer = listed(
        ID_PEER,
        "shop-pricing-1",
        "exited",
        {"shop_back": endpoint("shop_back", "")},
        {"com.docker.compose.service": "pricing"},
    )
    assert (peer.name, peer.state, peer.labels["com.docker.compose.service"]) == (
        "shop-pricing-1",
        "exited",
        "pricing",
    )
    assert peer.title == "shop-pricing-1 (compose service pricing)"


def test_what_a_container_answers_to() -> None:
    peer = inspected(
        ID_PEER,
        "shop-pricing-1",
        {"shop_back": endpoint("shop_back", "172.21.0.3", ["quotes"])},
        {"com.docker.compose.service": "pricing", "com.docker.swarm.service.name": "stack_px"},
    )
    assert peer.answers_to("shop-pricing-1") == "container name"
    assert peer.answers_to("Pricing") is not None
    assert "compose service pricing" in (peer.answers_to("pricing") or "")
    assert peer.answers_to("tasks.stack_px") == "Swarm service"
    assert peer.answers_to("quotes") == "network alias on shop_back"
    assert peer.answers_to(ID_PEER[:12]) == "container id"
    assert peer.answers_to("bbb") is None
    assert peer.answers_to("nats") is None


def test_a_name_on_another_network() -> None:
    peer = inspected(
        ID_PEER,
        "shop-pricing-1",
        {"shop_back": endpoint("shop_back", "172.21.0.3", ["pricing"])},
        {"com.docker.compose.service": "pricing", "com.docker.compose.project": "shop"},
    )
    elsewhere = inspected(
        "c" * 64,
        "other-pricing-1",
        {"other_default": endpoint("other_default", "172.22.0.3", ["pricing"])},
        {"com.docker.compose.service": "pricing", "com.docker.compose.project": "other"},
    )
    (finding,) = explain_unresolved("tcp://pricing:7000", "pricing", ME, [elsewhere, peer])
    assert finding.level == "fail"
    assert "'pricing' is shop-pricing-1" in finding.message  # this project's, not the other
    assert "on shop_back; this container (shop-app-1) is on shop_front" in finding.message
    assert "share no network" in finding.message
    assert "docker network connect shop_back shop-app-1" in finding.fix
    assert "external: true" in finding.fix


def test_a_stopped_peer_a_missing_one_and_a_missing_alias() -> None:
    stopped = listed(ID_PEER, "pricing", "exited", {}, {})
    (finding,) = explain_unresolved("u", "pricing", ME, [stopped])
    assert "which is exited" in finding.message
    assert "docker start pricing" in finding.fix
    (finding,) = explain_unresolved("u", "pricing", ME, [])
    assert "no container on this Docker engine" in finding.message
    same_net = inspected(
        ID_PEER,
        "shop-pricing-1",
        {"shop_front": endpoint("shop_front", "172.20.0.3")},
        {"com.docker.compose.service": "pricing"},
    )
    (finding,) = explain_unresolved("u", "pricing", ME, [same_net])
    assert "shares shop_front" in finding.message
    assert "not its name or an alias there" in finding.message
    assert "--alias pricing shop_front shop-pricing-1" in finding.fix


def test_the_default_bridge_is_no_shared_network_for_names() -> None:
    me = inspected(ID_ME, "app", {"bridge": endpoint("bridge", "172.17.0.2")})
    peer = inspected(ID_PEER, "pricing", {"bridge": endpoint("bridge", "172.17.0.3")})
    (finding,) = explain_unresolved("u", "pricing", me, [peer])
    assert "only network it shares with this container is the default bridge" in finding.message
    assert "docker network create NET" in finding.fix


def test_an_address_that_does_not_answer() -> None:
    peer = inspected(ID_PEER, "pricing", {"shop_back": endpoint("shop_back", "172.21.0.3")})
    finding = explain_unanswered("u", "172.21.0.3", ME, [peer])
    assert finding is not None
    assert "172.21.0.3 is pricing, on shop_back" in finding.message
    assert "share no network" in finding.message
    near = inspected(ID_PEER, "pricing", {"shop_front": endpoint("shop_front", "172.20.0.9")})
    finding = explain_unanswered("u", "172.20.0.9", ME, [near])
    assert finding is not None
    assert "the port is closed (or filtered) there" in finding.message
    assert explain_unanswered("u", "10.9.9.9", ME, [peer, near]) is None


def test_peers_by_label_and_compose_siblings() -> None:
    labelled = inspected(
        ID_PEER, "worker", {"jobs": endpoint("jobs", "10.0.0.2")}, {"meshbus.peer": "shop"}
    )
    other_mesh = inspected(
        "c" * 64, "billing", {"bill": endpoint("bill", "10.1.0.2")}, {"meshbus.peer": "billing"}
    )
    sibling = inspected(
        "d" * 64,
        "shop-db-1",
        {"shop_db": endpoint("shop_db", "10.2.0.2")},
        {"com.docker.compose.project": "shop"},
    )
    findings = shared_networks_by_label(ME, [labelled, other_mesh, sibling])
    assert [f.level for f in findings] == ["fail", "warn"]
    assert "worker, labelled meshbus.peer=shop, is on jobs" in findings[0].message
    assert "compose project shop" in findings[1].message
    assert "kept apart on purpose" in findings[1].fix
    joined = inspected(
        ID_PEER,
        "worker",
        {"shop_front": endpoint("shop_front", "172.20.0.5")},
        {"meshbus.peer": "shop"},
    )
    (ok,) = shared_networks_by_label(ME, [joined, other_mesh])
    assert ok.level == "ok"
    assert "1 container(s) labelled meshbus.peer" in ok.message
    assert shared_networks_by_label(ME, [other_mesh]) == []


def test_mtu_of_interfaces_and_overlay_networks(tmp_path: Path) -> None:
    for name, mtu, mac in (("lo", 65536, ""), ("eth0", 1500, "02:42:AC:14:00:02")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "mtu").write_text(f"{mtu}\n")
        (tmp_path / name / "address").write_text(f"{mac}\n")
    interfaces = interface_mtus(tmp_path)
    assert interfaces == {"eth0": (1500, "02:42:AC:14:00:02")}
    (plain,) = mtu_findings(interfaces)
    assert plain.message == "interfaces: eth0 1500"
    overlay = {
        "shop_front": {"Driver": "overlay", "Options": {"com.docker.network.driver.mtu": "1500"}}
    }
    ok, warn = mtu_findings(interfaces, ME, overlay)
    assert (
        "eth0 1500 (network shop_front, overlay, com.docker.network.driver.mtu=1500)" in ok.message
    )
    assert "which only sending a large frame can show" in ok.message
    assert warn.level == "warn"
    assert "links of 1550 bytes" in warn.message
    assert "com.docker.network.driver.mtu=<link MTU - 50>" in warn.fix
    (fine,) = mtu_findings(
        {"eth0": (1450, "02:42:ac:14:00:02")}, ME, {"shop_front": {"Driver": "overlay"}}
    )
    assert fine.level == "ok"


def test_container_ids_from_proc(tmp_path: Path) -> None:
    (tmp_path / "mountinfo").write_text(
        "1 2 0:3 / / rw - overlay overlay rw\n"
        f"4 1 8:1 /var/lib/docker/containers/{ID_ME}/resolv.conf /etc/resolv.conf rw - ext4\n"
        f"5 1 8:1 /var/lib/docker/containers/{ID_ME}/hostname /etc/hostname rw - ext4\n"
    )
    (tmp_path / "cgroup").write_text(f"12:pids:/docker/{ID_PEER}\n0::/\n")
    assert container_ids_from_proc(tmp_path) == [ID_ME, ID_PEER]
    assert container_ids_from_proc(tmp_path / "nowhere") == []


# -- the API client against a real HTTP server on a unix socket --------------------------------


class _Answers(http.server.BaseHTTPRequestHandler):
    version: str | None = "1.43"
    seen: list[str] = []  # noqa: RUF012 (one test at a time uses it)

    def do_GET(self) -> None:
        type(self).seen.append(self.path)
        if self.path == "/_ping":
            body, status = b"OK", 200
        elif self.path.endswith("/containers/app/json"):
            body, status = b'{"Id": "' + ID_ME.encode() + b'", "Name": "/app"}', 200
        else:
            body, status = b'{"message": "No such container: nope"}', 404
        self.send_response(status)
        if self.version:
            self.send_header("Api-Version", self.version)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self) -> Any:
        request, _ = super().get_request()
        return request, ("local", 0)


@pytest.fixture
def api_socket(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "docker.sock"
    _Answers.seen = []
    server = _UnixHTTPServer(str(path), _Answers)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield path
    server.shutdown()
    server.server_close()
    thread.join()


def test_the_api_version_comes_from_ping(api_socket: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = Engine(f"unix://{api_socket}")
    assert engine.container("app")["Name"] == "/app"
    assert _Answers.seen == ["/_ping", "/v1.43/containers/app/json"]
    with pytest.raises(DockerEngineError) as caught:
        engine.container("nope")
    assert caught.value.status == 404
    assert "No such container" in str(caught.value)
    assert engine.find_self(["nope", "app"], "") is not None
    assert engine.find_self([], "app") is None  # a name, but not the container's hostname
    monkeypatch.setattr(_Answers, "version", None)
    assert Engine(f"unix://{api_socket}").version() == "1.41"


def test_no_engine_is_a_typed_error_and_a_skip(tmp_path: Path) -> None:
    with pytest.raises(DockerEngineError):
        Engine("ssh://somewhere")
    with pytest.raises(DockerEngineError) as caught:
        Engine(f"unix://{tmp_path}/none.sock").version()
    assert isinstance(caught.value.__cause__, FileNotFoundError)
    assert Engine.from_environ({"DOCKER_HOST": "tcp://proxy:2375"}).host == "tcp://proxy:2375"


@pytest.mark.asyncio
async def test_diagnose_without_a_socket_says_skip(tmp_path: Path) -> None:
    user = tmp_path / "resolv.conf"
    user.write_text("nameserver 127.0.0.11\n")
    findings = await diagnose(
        ["memory://a"],
        resolv_conf=str(user),
        container=True,
        docker=f"unix://{tmp_path}/docker.sock",
        sys_net=tmp_path,
    )
    (skip,) = [f for f in findings if f.check == "docker"]
    assert skip.level == "skip"
    assert f"no Docker socket at {tmp_path}/docker.sock" in skip.message
    assert ":ro does not make the API read-only" in skip.fix
    assert "[skip] docker:" in render(findings)
    assert "fix: mount the engine's socket" in render(findings)


# -- the MTU probe against real listeners on loopback -------------------------------------------


@pytest_asyncio.fixture
async def meshbus_listener() -> AsyncIterator[int]:
    """A meshbus direct listener on 127.0.0.1 with a token."""
    port = free_port()
    async with (
        meshbus.connect("memory://doctor", listen=f"tcp://127.0.0.1:{port}?token=s3cret") as bus,
        bus.subscribe("doctor.>", group="probe"),
    ):
        yield port


@pytest.mark.asyncio
async def test_probe_reaches_a_listener_with_or_without_its_token(meshbus_listener: int) -> None:
    for token in ("s3cret", None):  # a refused token still proves the hello was read
        finding = await probe("u", "127.0.0.1", meshbus_listener, size=65536, token=token)
        assert finding.level == "ok", finding
        assert f"a 65536-byte frame reaches 127.0.0.1:{meshbus_listener}" in finding.message


@pytest_asyncio.fixture
async def other_server() -> AsyncIterator[tuple[int, list[str]]]:
    """A server that says ``INFO`` (a NATS server does) or nothing, as told."""
    behaviour = ["info"]

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if behaviour[0] == "info":
            writer.write(b'INFO {"server_id":"x"}\r\n')
        await reader.read()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1], behaviour
    server.close()
    await server.wait_closed()


@pytest.mark.asyncio
async def test_probe_tells_a_stranger_from_a_silent_peer(
    other_server: tuple[int, list[str]],
) -> None:
    port, behaviour = other_server
    foreign = await probe("u", "127.0.0.1", port, timeout=1.0)
    assert foreign.level == "warn"
    assert "does not speak the meshbus direct protocol" in foreign.message
    behaviour[0] = "silent"
    silent = await probe("u", "127.0.0.1", port, timeout=0.3)
    assert silent.level == "skip"
    assert "did not answer a small meshbus hello (silent)" in silent.message


def test_findings_are_plain_data() -> None:
    assert Finding("skip", "docker", "m", "f") == Finding("skip", "docker", "m", "f")
