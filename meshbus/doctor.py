"""``meshbus doctor``: why can't this container reach the others?

Run inside a container (or anywhere), it checks the configuration meshbus would use and what
the usual Docker networking failures look like from here, and says how to fix each:

- the default bridge network, where container names do not resolve (no embedded DNS);
- ``localhost`` in a URL, which inside a container means the container itself;
- a name that does not resolve (not running, or on another network);
- an address whose port does not answer;
- ``MESHBUS_*`` settings that do not parse.

It exits non-zero when something is wrong, so it can serve as a healthcheck.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from meshbus.config import parse_url, resolve_config
from meshbus.discovery import Nameserver, nameservers_from_resolv_conf, resolve
from meshbus.errors import ConfigurationError, DiscoveryError, NameNotFound

__all__ = ["Finding", "diagnose", "render"]

DOCKER_DNS = "127.0.0.11"
DEFAULT_PORTS = {"nats": 4222, "amqp": 5672, "amqps": 5671, "kafka": 9092}
_HOSTLESS = {"memory", "file"}


@dataclass(frozen=True)
class Finding:
    """One result: ``level`` is ``ok``, ``warn`` or ``fail``; ``fix`` says what to do."""

    level: str
    check: str
    message: str
    fix: str = ""


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


async def diagnose(
    urls: Sequence[str] = (),
    *,
    environ: Mapping[str, str] | None = None,
    resolv_conf: str = "/etc/resolv.conf",
    nameserver: Nameserver | None = None,
    container: bool | None = None,
    timeout: float = 2.0,
) -> list[Finding]:
    """Check ``urls`` (default: what ``MESHBUS_URL``/``ROUTES``/``LISTEN`` configure)."""
    env = os.environ if environ is None else environ
    container = in_container() if container is None else container
    findings: list[Finding] = []
    targets = list(urls)
    if not targets:
        try:
            config = resolve_config(None, None, None, env)
        except ConfigurationError as exc:
            return [
                Finding("fail", "configuration", str(exc), "set MESHBUS_URL (and check its syntax)")
            ]
        targets = [config.url, *config.routes.values()]
        findings.append(Finding("ok", "configuration", f"MESHBUS_URL={config.url}"))
    findings.extend(_network(resolv_conf, container, nameserver))
    servers = nameserver or _first_nameserver(resolv_conf)
    for url in dict.fromkeys(targets):
        findings.extend(await _check_url(url, container, servers, timeout))
    return findings


def _first_nameserver(resolv_conf: str) -> Nameserver | None:
    try:
        found = nameservers_from_resolv_conf(resolv_conf)
    except OSError:
        return None
    return found[0] if found else None


def _network(resolv_conf: str, container: bool, nameserver: Nameserver | None) -> list[Finding]:
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


async def _check_url(
    url: str, container: bool, nameserver: Nameserver | None, timeout: float
) -> list[Finding]:
    try:
        parts = parse_url(url)
    except ConfigurationError as exc:
        return [Finding("fail", url, str(exc), "fix the URL")]
    scheme = parts.scheme.lower()
    if scheme in _HOSTLESS:
        return _check_local(url, scheme, parts.path)
    findings: list[Finding] = []
    for item in parts.netloc.rpartition("@")[2].split(","):
        host, _, port_text = item.strip().rpartition(":")
        if not host:
            host, port_text = item.strip(), str(DEFAULT_PORTS.get(scheme, 0))
        host = host.strip("[]")
        port = int(port_text) if port_text.isdigit() else 0
        findings.extend(await _check_host(url, host, port, container, nameserver, timeout))
    return findings


def _check_local(url: str, scheme: str, path: str) -> list[Finding]:
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


async def _check_host(
    url: str, host: str, port: int, container: bool, nameserver: Nameserver | None, timeout: float
) -> list[Finding]:
    findings: list[Finding] = []
    if container and _is_loopback(host):
        findings.append(
            Finding(
                "warn",
                url,
                f"{host!r} inside a container means this container itself, not another one",
                "use the other service's name (its compose service name) instead of localhost",
            )
        )
    try:
        addresses = await resolve(host, nameserver=nameserver, timeout=timeout)
    except NameNotFound:
        return [
            *findings,
            Finding(
                "fail",
                url,
                f"{host!r} does not resolve",
                "is that service running, and on the same Docker network as this container? "
                "(docker network inspect NETWORK lists who is on it)",
            ),
        ]
    except DiscoveryError as exc:
        return [
            *findings,
            Finding("fail", url, f"looking up {host!r} failed: {exc}", "check the nameserver"),
        ]
    findings.append(Finding("ok", url, f"{host} resolves to {', '.join(addresses)}"))
    if url.startswith("dns://") and len(addresses) == 1 and not host.startswith("tasks."):
        findings.append(
            Finding(
                "warn",
                url,
                f"{host} resolves to one address: fine for one replica; in Swarm a service name is "
                "one virtual IP",
                f"in Swarm, use dns://tasks.{host}:{port} or ?swarm_tasks=auto to reach every "
                "replica",
            )
        )
    if port:
        for address in addresses:
            findings.append(await _check_port(url, address, port, timeout))
    return findings


async def _check_port(url: str, address: str, port: int, timeout: float) -> Finding:
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


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def render(findings: Sequence[Finding], as_json: bool = False) -> str:
    """The findings as text (one line each, fixes indented) or as JSON."""
    if as_json:
        return json.dumps([asdict(f) for f in findings], indent=2)
    marks = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}
    lines = []
    for finding in findings:
        lines.append(f"[{marks[finding.level]}] {finding.check}: {finding.message}")
        if finding.fix and finding.level != "ok":
            lines.append(f"       fix: {finding.fix}")
    return "\n".join(lines)
