"""The checks that need no Docker engine: resolv.conf, URLs, names, ports, folders."""

from __future__ import annotations

import asyncio
import ipaddress
import os
from pathlib import Path

from meshbus.config import parse_url
from meshbus.discovery import Nameserver, nameservers_from_resolv_conf
from meshbus.doctor._report import Finding
from meshbus.errors import ConfigurationError

__all__ = [
    "DEFAULT_PORTS",
    "DOCKER_DNS",
    "check_local",
    "check_port",
    "first_nameserver",
    "in_container",
    "is_loopback",
    "resolv_network",
    "url_targets",
]

DOCKER_DNS = "127.0.0.11"
DEFAULT_PORTS = {"nats": 4222, "amqp": 5672, "amqps": 5671, "kafka": 9092}
HOSTLESS = {"memory", "file"}


def in_container() -> bool:
    """A best guess at whether this process runs in a container."""
    if Path("/.dockerenv").exists() or Path("/run/.containerenv").exists():
        return True
    try:
        return (
            "docker" in Path("/proc/1/cgroup").read_text()
            or "kubepods" in Path("/proc/1/cgroup").read_text()
        )
    except OSError:
        return False


def first_nameserver(resolv_conf: str) -> Nameserver | None:
    """The first nameserver ``resolv_conf`` names, if it can be read."""
    try:
        found = nameservers_from_resolv_conf(resolv_conf)
    except OSError:
        return None
    return found[0] if found else None


def resolv_network(
    resolv_conf: str, container: bool, nameserver: Nameserver | None
) -> list[Finding]:
    """A user-defined network (Docker's DNS in ``resolv_conf``) or the default bridge."""
    if nameserver is not None or not container:
        return []
    try:
        servers = [ns.host for ns in nameservers_from_resolv_conf(resolv_conf)]
    except OSError:
        servers = []
    if DOCKER_DNS in servers:
        return [
            Finding(
                "ok", "network", "on a user-defined network: names resolve through Docker's DNS"
            )
        ]
    return [
        Finding(
            "fail",
            "network",
            f"no Docker embedded DNS ({DOCKER_DNS}) in {resolv_conf}: this looks like the default "
            "bridge network, where container names do not resolve",
            "put the services on a user-defined network (docker network create NAME; "
            "docker run --network NAME ...); docker compose does this for you",
        )
    ]


def check_local(url: str, scheme: str, path: str) -> list[Finding]:
    """``memory://`` needs nothing; a ``file://`` folder must be a writable directory."""
    if scheme == "memory":
        return [Finding("ok", url, "in-process channel: nothing to reach")]
    folder = Path(path)
    if not folder.is_dir():
        return [
            Finding(
                "fail",
                url,
                f"{folder} is not a directory here",
                "mount the shared volume at that path",
            )
        ]
    if not os.access(folder, os.W_OK):
        return [Finding("fail", url, f"{folder} is not writable", "mount the volume read-write")]
    return [Finding("ok", url, f"{folder} is a writable directory")]


async def check_port(url: str, address: str, port: int, timeout: float) -> Finding:
    """Does ``address:port`` accept a TCP connection within ``timeout``?"""
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(address, port)
    except (OSError, TimeoutError) as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        return Finding(
            "fail",
            url,
            f"{address}:{port} does not answer ({reason})",
            "is the service listening on that port, on all interfaces (0.0.0.0) and not only "
            "127.0.0.1? Is a firewall or another network in between?",
        )
    writer.close()
    await writer.wait_closed()
    return Finding("ok", url, f"{address}:{port} accepts connections")


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address: inside a container, the container itself."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_targets(url: str) -> tuple[str, str, list[tuple[str, int]]] | Finding:
    """``(scheme, path, [(host, port), ...])`` of ``url``, or the finding that it is bad."""
    try:
        parts = parse_url(url)
    except ConfigurationError as exc:
        return Finding("fail", url, str(exc), "fix the URL")
    scheme = parts.scheme.lower()
    if scheme in HOSTLESS:
        return scheme, parts.path, []
    targets = []
    for item in parts.netloc.rpartition("@")[2].split(","):
        host, _, port_text = item.strip().rpartition(":")
        if not host:
            host, port_text = item.strip(), str(DEFAULT_PORTS.get(scheme, 0))
        targets.append((host.strip("[]"), int(port_text) if port_text.isdigit() else 0))
    return scheme, parts.path, targets
