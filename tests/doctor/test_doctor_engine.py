"""``meshbus doctor`` inside real containers, asking the real Docker engine.

Each test builds its own ``mbdoc-*`` networks and containers (see ``conftest.Lab``), runs the
doctor in one of them and reads its JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.docker


def by_check(findings: list[dict[str, str]], check: str) -> list[dict[str, str]]:
    return [f for f in findings if f["check"] == check]


def iptables() -> str:
    for name in ("iptables-nft", "iptables-legacy", "iptables"):
        if Path("/usr/sbin", name).exists():
            return f"/usr/sbin/{name}"
    pytest.fail("no iptables in /usr/sbin (Debian's iptables package comes with docker.io)")


def test_a_peer_on_another_network_and_by_label(lab: Any) -> None:
    """The peer's name does not resolve, its address does not answer: the doctor names both
    containers' networks; the label check fails too. Connecting them fixes all of it."""
    front, back = lab.network("front"), lab.network("back")
    mesh = {"meshbus.peer": lab.prefix, "com.docker.compose.project": lab.prefix}
    service = f"{lab.prefix}-svc"  # as compose does: a label, and an alias on its networks
    peer = lab.container(
        "peer", [back], labels={**mesh, "com.docker.compose.service": service}, aliases=[service]
    )
    app = lab.container("app", [front], ["sleep", "infinity"], socket=True, labels=mesh)
    peer.reload()
    peer_ip = peer.attrs["NetworkSettings"]["Networks"][back]["IPAddress"]
    by_service = f"tcp://{service}:7000"
    by_ip = f"tcp://{peer_ip}:7000"

    code, findings = lab.doctor(app, "--timeout", "1", by_service, by_ip)

    assert code == 1
    (me,) = by_check(findings, "docker")
    assert me["level"] == "ok"
    assert f"this container is {lab.prefix}-app" in me["message"]
    assert front in me["message"]
    unresolved = by_check(findings, by_service)
    assert unresolved[0]["level"] == "fail"
    assert "does not resolve" in unresolved[0]["message"]
    explained = [f for f in unresolved[1:] if lab.prefix + "-peer" in f["message"]]
    assert explained, unresolved
    assert explained[0]["level"] == "fail"
    assert "compose service" in explained[0]["message"]
    assert f"on {back}" in explained[0]["message"]
    assert f"on {front}" in explained[0]["message"]
    assert "share no network" in explained[0]["message"]
    assert f"docker network connect {back} {lab.prefix}-app" in explained[0]["fix"]
    assert "networks:" in explained[0]["fix"]
    address = by_check(findings, by_ip)
    assert [f["level"] for f in address] == ["ok", "fail", "fail"]
    assert f"{peer_ip} is {lab.prefix}-peer" in address[2]["message"]
    assert "share no network" in address[2]["message"]
    (label,) = by_check(findings, "labels")
    assert label["level"] == "fail"
    assert f"meshbus.peer={lab.prefix}" in label["message"]

    lab.client.networks.get(back).connect(app)
    code, findings = lab.doctor(app, "--timeout", "2", by_service, by_ip)

    assert code == 0, json.dumps(findings, indent=1)
    assert all(f["level"] == "ok" for f in by_check(findings, by_service)), findings
    assert by_check(findings, "labels")[0]["message"].startswith("shares a network with the 1")


def test_without_the_socket_it_says_how_to_mount_it(lab: Any) -> None:
    net = lab.network("solo")
    app = lab.container("app", [net], ["sleep", "infinity"])
    missing_peer = f"tcp://{lab.prefix}-nobody:7000"

    code, findings = lab.doctor(app, "--timeout", "1", missing_peer)

    assert code == 1
    (docker,) = by_check(findings, "docker")
    assert docker["level"] == "skip"
    assert "no Docker socket at /var/run/docker.sock" in docker["message"]
    assert "/var/run/docker.sock:/var/run/docker.sock:ro" in docker["fix"]
    (unresolved,) = by_check(findings, missing_peer)
    assert "Docker socket mounted" in unresolved["fix"]


def test_a_stopped_peer_and_a_name_nobody_has(lab: Any) -> None:
    net = lab.network("mesh")
    peer = lab.container("peer", [net], ["sleep", "infinity"])
    peer.stop(timeout=0)
    app = lab.container("app", [net], ["sleep", "infinity"], socket=True)
    stopped, nobody = f"tcp://{lab.prefix}-peer:7000", f"tcp://{lab.prefix}-nobody:7000"

    code, findings = lab.doctor(app, "--timeout", "1", stopped, nobody)

    assert code == 1
    assert "which is exited" in by_check(findings, stopped)[1]["message"]
    assert f"docker start {lab.prefix}-peer" in by_check(findings, stopped)[1]["fix"]
    assert "no container on this Docker engine" in by_check(findings, nobody)[1]["message"]


def test_mtu_of_the_network_and_a_black_hole_for_large_frames(lab: Any) -> None:
    """The network's MTU option shows on the interface; a peer that drops every packet over
    1000 bytes (what a too-small underlay does to an overlay) passes the small hello and fails
    the large one."""
    net = lab.network("mtu", **{"com.docker.network.driver.mtu": "1400"})
    peer = lab.container("peer", [net], cap_add=["NET_ADMIN"])
    app = lab.container("app", [net], ["sleep", "infinity"], socket=True)
    url = f"tcp://{lab.prefix}-peer:7000"

    code, findings = lab.doctor(app, url)

    assert code == 0, json.dumps(findings, indent=1)
    (mtu,) = by_check(findings, "mtu")
    assert (
        f"eth0 1400 (network {net}, bridge, com.docker.network.driver.mtu=1400)" in (mtu["message"])
    )
    assert "a 16384-byte frame reaches" in by_check(findings, url)[-1]["message"]
    assert "path MTU 1400" in by_check(findings, url)[-1]["message"]

    drop = ["-A", "INPUT", "-p", "tcp", "--dport", "7000", "-m", "length"]
    code, output = peer.exec_run([iptables(), *drop, "--length", "1000:65535", "-j", "DROP"])
    assert code == 0, output
    code, findings = lab.doctor(app, "--timeout", "1.5", url)

    assert code == 1
    probe = by_check(findings, url)[-1]
    assert probe["level"] == "fail"
    assert "small frames reach" in probe["message"]
    assert "MTU black hole" in probe["message"]
    assert "com.docker.network.driver.mtu" in probe["fix"]
    code, findings = lab.doctor(app, "--probe-bytes", "0", url)
    assert code == 0, json.dumps(findings, indent=1)
