"""MTU: what this container's interfaces and networks say, and whether large frames arrive.

A payload larger than the MTU is not a problem in itself: TCP cuts it into segments that fit
the interface (MSS). What fails is a path that carries less than the interfaces claim: an
overlay (VXLAN adds 50 bytes) whose MTU is more than the links between the hosts carry minus
50, a VPN or cloud network under 1500. Full-size segments are then dropped without an ICMP
answer, so connections open, hellos and heartbeats pass, and the first large message hangs.
No number read inside a container reveals the underlay, so the honest test is to send a
large frame and see whether it arrives: :func:`probe` does that for direct (``tcp://``,
``dns://``) peers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from meshbus.channels.direct.frames import (
    MAGIC,
    VERSION,
    Bye,
    FrameDecoder,
    FrameType,
    Hello,
    encode,
)
from meshbus.doctor._peers import Container
from meshbus.doctor._report import Finding
from meshbus.errors import ProtocolError

__all__ = ["PROBE_BYTES", "interface_mtus", "mtu_findings", "probe"]

PROBE_BYTES = 16 * 1024  # more than any MTU (jumbo frames are 9000), so segments are full size
VXLAN_OVERHEAD = 50
MTU_OPTION = "com.docker.network.driver.mtu"
_TCP_INFO = struct.Struct("=8B24I")  # struct tcp_info up to tcpi_total_retrans (Linux)


def interface_mtus(sys_net: Path = Path("/sys/class/net")) -> dict[str, tuple[int, str]]:
    """``{interface: (mtu, mac)}`` for every interface but loopback."""
    found: dict[str, tuple[int, str]] = {}
    try:
        interfaces = sorted(p for p in sys_net.iterdir() if p.name != "lo")
    except OSError:
        return found
    for path in interfaces:
        try:
            mtu = int((path / "mtu").read_text())
        except (OSError, ValueError):
            continue
        try:
            mac = (path / "address").read_text().strip()
        except OSError:
            mac = ""
        found[path.name] = (mtu, mac)
    return found


def mtu_findings(
    interfaces: Mapping[str, tuple[int, str]],
    me: Container | None = None,
    networks: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[Finding]:
    """What the interface MTUs (and, with the engine, each network's driver) mean.

    ``networks`` maps a network name to its ``GET /networks/{id}`` answer. An overlay whose MTU
    is over 1450 needs links of more than 1500 bytes between the hosts: a warning, as most
    links carry 1500. Anything else is reported as it is, for the probe to test.
    """
    by_mac = {a.mac.lower(): a.network for a in (me.networks if me else ()) if a.mac}
    described, findings = [], []
    for name, (mtu, mac) in interfaces.items():
        network = by_mac.get(mac.lower())
        doc = (networks or {}).get(network or "") or {}
        driver = str(doc.get("Driver") or "")
        configured = (doc.get("Options") or {}).get(MTU_OPTION)
        where = f" (network {network}, {driver or 'unknown driver'}" if network else ""
        where += (
            f", {MTU_OPTION}={configured})" if network and configured else (")" if network else "")
        )
        described.append(f"{name} {mtu}{where}")
        if driver == "overlay" and mtu > 1500 - VXLAN_OVERHEAD:
            findings.append(
                Finding(
                    "warn",
                    "mtu",
                    f"overlay network {network} has MTU {mtu}: VXLAN adds {VXLAN_OVERHEAD} bytes, "
                    f"so its full-size packets need links of {mtu + VXLAN_OVERHEAD} bytes between "
                    "the hosts; on ordinary 1500-byte links they are dropped without a word",
                    "unless every link between the hosts carries jumbo frames, recreate it with "
                    f"-o {MTU_OPTION}=<link MTU - {VXLAN_OVERHEAD}> (1450 on 1500-byte links; "
                    f"compose: networks: {network}: driver_opts: {{{MTU_OPTION}: '1450'}})",
                )
            )
    if not described:
        return findings
    overlay = any("overlay" in d for d in described)
    note = (
        f"; an overlay needs its MTU + {VXLAN_OVERHEAD} bytes between hosts, which only "
        "sending a large frame can show (see the probe of each direct peer)"
        if overlay
        else ""
    )
    return [Finding("ok", "mtu", f"interfaces: {', '.join(described)}{note}"), *findings]


def _hello(size: int, token: str | None) -> bytes:
    """A HELLO frame of about ``size`` bytes: the padding is a JSON field peers ignore."""
    doc: dict[str, Any] = {
        "node": f"meshbus-doctor-{os.getpid()}",
        "max_frame": 1 << 20,
        "credit": 0,
        "interests": [],
    }
    if token is not None:
        doc["token"] = token
    body = MAGIC + bytes([VERSION]) + json.dumps(doc, separators=(",", ":")).encode()
    if size > len(body) + 16:
        doc["doctor_padding"] = "x" * (size - len(body) - 20)
        body = MAGIC + bytes([VERSION]) + json.dumps(doc, separators=(",", ":")).encode()
    return struct.pack(">IB", 1 + len(body), FrameType.HELLO) + body


def _tcp_info(writer: asyncio.StreamWriter) -> tuple[int, int] | None:
    """(path MTU, total retransmissions) the kernel saw on this connection (Linux)."""
    sock = writer.get_extra_info("socket")
    if sock is None or not hasattr(socket, "TCP_INFO"):
        return None
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO.size)
        fields = _TCP_INFO.unpack(raw[: _TCP_INFO.size].ljust(_TCP_INFO.size, b"\0"))
    except (OSError, struct.error):
        return None
    return fields[8 + 13], fields[8 + 23]  # tcpi_pmtu, tcpi_total_retrans


async def _exchange(
    address: str, port: int, size: int, token: str | None, timeout: float
) -> tuple[str, str, tuple[int, int] | None]:
    """Send a HELLO of ``size`` bytes; ``(outcome, detail, tcp_info)``.

    A listener says nothing until it has read a dialler's whole hello, so any frame back (its
    HELLO, or a BYE refusing the token) proves the frame arrived. Outcomes: ``answered``,
    ``silent`` (nothing within ``timeout``), ``closed`` (closed without a frame), ``foreign``
    (it sent bytes that are not meshbus frames).
    """
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(address, port)
    try:
        writer.write(_hello(size, token))
        decoder = FrameDecoder()
        try:
            async with asyncio.timeout(timeout):
                while True:
                    data = await reader.read(65536)
                    if not data:
                        return "closed", "", _tcp_info(writer)
                    for frame in decoder.feed(data):
                        if isinstance(frame, Hello):
                            return "answered", "", _tcp_info(writer)
                        if isinstance(frame, Bye):
                            return "answered", frame.reason, _tcp_info(writer)
                        return "foreign", f"it sent {type(frame).__name__} first", None
        except TimeoutError:
            return "silent", "", _tcp_info(writer)
        except ProtocolError as exc:
            return "foreign", str(exc), None
    finally:
        if not writer.is_closing():
            writer.writelines(encode(Bye("meshbus doctor: probe done")))
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), 1.0)


async def probe(
    url: str,
    address: str,
    port: int,
    *,
    size: int = PROBE_BYTES,
    token: str | None = None,
    timeout: float = 2.0,
) -> Finding:
    """Does a frame of ``size`` bytes reach the direct peer at ``address:port``?

    First a small hello (the control: is it a meshbus listener that answers?), then one of
    ``size`` bytes on a new connection. Small answered and large not is an MTU black hole.
    """
    where = f"{address}:{port}"
    try:
        small, detail, _ = await _exchange(address, port, 0, token, timeout)
        if small == "foreign":
            return Finding(
                "warn",
                url,
                f"{where} does not speak the meshbus direct protocol ({detail})",
                "is that the peer's listen port (MESHBUS_LISTEN), not a broker's?",
            )
        if small != "answered":
            return Finding(
                "skip",
                url,
                f"{where} did not answer a small meshbus hello ({small}): large frames not probed",
                "a TLS listener, or one that is shutting down, does not answer a plain hello",
            )
        large, _, info = await _exchange(address, port, size, token, timeout)
    except (OSError, TimeoutError) as exc:
        return Finding("skip", url, f"{where}: the MTU probe could not connect ({exc})")
    path = f" (path MTU {info[0]}, {info[1]} retransmission(s))" if info and info[0] else ""
    if large == "answered":
        return Finding("ok", url, f"a {size}-byte frame reaches {where}{path}")
    return Finding(
        "fail",
        url,
        f"small frames reach {where} but a {size}-byte one did not arrive within {timeout:g} s "
        f"({large}){path}: packets larger than the path carries are dropped (an MTU black hole)",
        f"set the network's MTU to what the links between the hosts carry (overlay: link MTU - "
        f"{VXLAN_OVERHEAD}): docker network create -o {MTU_OPTION}=1400 ...; compose: networks: "
        f"NAME: driver_opts: {{{MTU_OPTION}: '1400'}}; test the path from the host with "
        f"ping -M do -s <MTU - 28> {address}",
    )
