"""``diagnose()``: run every check that applies here, in order, and collect the findings."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from meshbus.config import parse_url, resolve_config
from meshbus.discovery import Nameserver, resolve
from meshbus.doctor._checks import (
    check_local,
    check_port,
    first_nameserver,
    in_container,
    is_loopback,
    resolv_network,
    url_targets,
)
from meshbus.doctor._engine import DEFAULT_DOCKER_HOST, Engine, container_ids_from_proc
from meshbus.doctor._mtu import PROBE_BYTES, interface_mtus, mtu_findings, probe
from meshbus.doctor._peers import (
    Container,
    describe_self,
    explain_unanswered,
    explain_unresolved,
    shared_networks_by_label,
)
from meshbus.doctor._report import Finding
from meshbus.errors import ConfigurationError, DiscoveryError, DockerEngineError, NameNotFound

__all__ = ["diagnose"]

DIRECT = {"tcp", "dns"}
_MOUNT_FIX = (
    "mount the engine's socket into this container: docker run -v "
    "/var/run/docker.sock:/var/run/docker.sock:ro ... (compose: volumes: "
    "[/var/run/docker.sock:/var/run/docker.sock:ro]). The doctor only reads, but :ro does not "
    "make the API read-only: mount it where you trust the code, or set DOCKER_HOST=tcp://... to "
    "a read-only socket proxy"
)


class _Docker:
    """The engine's view of this container and the others, fetched once per run."""

    def __init__(self, engine: Engine, me: Container) -> None:
        self.engine = engine
        self.me = me
        self._others: list[Container] | None = None

    @classmethod
    async def connect(cls, host: str, timeout: float) -> _Docker | Finding:
        """This container as the engine at ``host`` sees it, or why it cannot be asked."""
        hostname = socket.gethostname()
        try:
            engine = Engine(host, timeout)
            doc = await asyncio.to_thread(engine.find_self, container_ids_from_proc(), hostname)
        except DockerEngineError as exc:
            if isinstance(exc.__cause__, FileNotFoundError):
                return Finding(
                    "skip",
                    "docker",
                    f"{exc.reason}: which networks peers are on, and peers by label, are not "
                    "checked",
                    _MOUNT_FIX,
                )
            return Finding(
                "skip",
                "docker",
                f"the Docker engine cannot be asked ({exc.reason}): peers' networks not checked",
                "check DOCKER_HOST and the socket's permissions (run as root or in its group)",
            )
        if doc is None:
            return Finding(
                "skip",
                "docker",
                f"the engine at {host} does not know this container (looked for the ids in "
                f"/proc/self/mountinfo and cgroup, and the hostname {hostname!r})",
                "is the socket another machine's engine? Leave the hostname as Docker sets it",
            )
        return cls(engine, Container.from_api(doc))

    async def others(self) -> list[Container]:
        """Every container but this one: running ones inspected (for their aliases)."""
        if self._others is None:

            def fetch() -> list[Container]:
                found = []
                for item in self.engine.containers(all=True):
                    if item.get("State") == "running":
                        try:
                            item = self.engine.container(str(item.get("Id")))
                        except DockerEngineError as exc:
                            if exc.status != 404:
                                raise
                    found.append(Container.from_api(item))
                return [c for c in found if c.id != self.me.id]

            self._others = await asyncio.to_thread(fetch)
        return self._others

    async def networks(self) -> dict[str, dict[str, Any]]:
        """``GET /networks/{id}`` of each network this container is on, by name."""

        def fetch() -> dict[str, dict[str, Any]]:
            found = {}
            for attachment in self.me.networks:
                try:
                    found[attachment.network] = self.engine.network(attachment.network_id)
                except DockerEngineError as exc:
                    if exc.status != 404:
                        raise
            return found

        return await asyncio.to_thread(fetch)


async def diagnose(
    urls: Sequence[str] = (),
    *,
    environ: Mapping[str, str] | None = None,
    resolv_conf: str = "/etc/resolv.conf",
    nameserver: Nameserver | None = None,
    container: bool | None = None,
    timeout: float = 2.0,
    docker: str | bool = True,
    probe_bytes: int = PROBE_BYTES,
    sys_net: Path = Path("/sys/class/net"),
) -> list[Finding]:
    """Check ``urls`` (default: what ``MESHBUS_URL``/``ROUTES``/``LISTEN`` configure).

    In a container (``container``, guessed when None) the Docker engine is asked too:
    ``docker`` is a ``DOCKER_HOST`` value, ``True`` for ``$DOCKER_HOST`` or the default socket,
    ``False`` not to ask. ``probe_bytes`` is the size of the frame sent to each direct peer to
    test the path's MTU (0: no probe).
    """
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
    findings.extend(resolv_network(resolv_conf, container, nameserver))
    engine: _Docker | Finding | None = None
    if container and docker is not False:
        host = docker if isinstance(docker, str) else env.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST
        engine = await _Docker.connect(host, timeout)
    checker = _Checker(
        container,
        nameserver or first_nameserver(resolv_conf),
        engine if isinstance(engine, _Docker) else None,
        timeout,
        probe_bytes,
    )
    for url in dict.fromkeys(targets):
        findings.extend(await checker.url(url))
    if isinstance(engine, Finding):
        findings.append(engine)
    elif engine is not None:
        findings.append(describe_self(engine.me))
        try:
            findings.extend(shared_networks_by_label(engine.me, await engine.others()))
            networks = await engine.networks()
        except DockerEngineError as exc:
            findings.append(Finding("skip", "docker", f"the engine stopped answering: {exc}"))
            networks = {}
    if container:
        me = engine.me if isinstance(engine, _Docker) else None
        findings.extend(mtu_findings(interface_mtus(sys_net), me, networks if me else None))
    return findings


class _Checker:
    def __init__(
        self,
        container: bool,
        nameserver: Nameserver | None,
        engine: _Docker | None,
        timeout: float,
        probe_bytes: int,
    ) -> None:
        self.container = container
        self.nameserver = nameserver
        self.engine = engine
        self.timeout = timeout
        self.probe_bytes = probe_bytes

    async def url(self, url: str) -> list[Finding]:
        parsed = url_targets(url)
        if isinstance(parsed, Finding):
            return [parsed]
        scheme, path, hosts = parsed
        if not hosts:
            return check_local(url, scheme, path)
        token = dict(parse_qsl(parse_url(url).query)).get("token")
        findings: list[Finding] = []
        for host, port in hosts:
            findings.extend(await self.host(url, scheme, host, port, token))
        return findings

    async def host(
        self, url: str, scheme: str, host: str, port: int, token: str | None
    ) -> list[Finding]:
        findings: list[Finding] = []
        if self.container and is_loopback(host):
            findings.append(
                Finding(
                    "warn",
                    url,
                    f"{host!r} inside a container means this container itself, not another one",
                    "use the other service's name (its compose service name) instead of localhost",
                )
            )
        try:
            addresses = await resolve(host, nameserver=self.nameserver, timeout=self.timeout)
        except NameNotFound:
            fix = (
                "is that service running, and on the same Docker network as this container? "
                "(docker network inspect NETWORK lists who is on it)"
            )
            if self.container and self.engine is None:
                fix += "; with the Docker socket mounted the doctor says which network it is on"
            findings.append(Finding("fail", url, f"{host!r} does not resolve", fix))
            if self.engine is not None:
                findings.extend(await self._engine_says(url, host, None))
            return findings
        except DiscoveryError as exc:
            return [
                *findings,
                Finding("fail", url, f"looking up {host!r} failed: {exc}", "check the nameserver"),
            ]
        findings.append(Finding("ok", url, f"{host} resolves to {', '.join(addresses)}"))
        if scheme == "dns" and len(addresses) == 1 and not host.startswith("tasks."):
            findings.append(
                Finding(
                    "warn",
                    url,
                    f"{host} resolves to one address: fine for one replica; in Swarm a service "
                    "name is one virtual IP",
                    f"in Swarm, use dns://tasks.{host}:{port} or ?swarm_tasks=auto to reach every "
                    "replica",
                )
            )
        if not port:
            return findings
        for address in addresses:
            answer = await check_port(url, address, port, self.timeout)
            findings.append(answer)
            if answer.level == "fail" and self.engine is not None:
                findings.extend(await self._engine_says(url, host, address))
            elif answer.level == "ok" and scheme in DIRECT and self.probe_bytes > 0:
                findings.append(
                    await probe(
                        url,
                        address,
                        port,
                        size=self.probe_bytes,
                        token=token,
                        timeout=self.timeout,
                    )
                )
        return findings

    async def _engine_says(self, url: str, host: str, address: str | None) -> list[Finding]:
        assert self.engine is not None
        try:
            others = await self.engine.others()
        except DockerEngineError as exc:
            return [Finding("skip", "docker", f"the engine stopped answering: {exc}")]
        if address is None:
            return explain_unresolved(url, host, self.engine.me, others)
        found = explain_unanswered(url, address, self.engine.me, others)
        return [found] if found else []
