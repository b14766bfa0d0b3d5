"""Where addresses come from: one small :class:`Source` protocol, and the sources meshbus has.

- :class:`DnsSource` — a DNS name (Docker's embedded DNS, Swarm ``tasks.`` names, Kubernetes
  headless services, which are plain DNS: one A record per ready pod).
- :class:`StaticSource` — a fixed list (``static:a:1,b:2``).
- The Docker Engine API by label (``docker:``) is reserved and not built yet; it will be a
  :class:`Source` that lists containers through the mounted socket, behind the ``docker`` extra.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Literal, Protocol, runtime_checkable

from meshbus.discovery._resolver import (
    DEFAULT_TIMEOUT,
    Family,
    NameserverSpec,
    lookup,
)
from meshbus.errors import ConfigurationError, LookupFailed, NotSupported

__all__ = ["DnsSource", "Source", "StaticSource", "source_from_spec"]

logger = logging.getLogger("meshbus.discovery")


@runtime_checkable
class Source(Protocol):
    """Anything that can list a service's addresses now.

    ``resolve()`` returns the current set — an empty set is a definite answer that there are
    none (a service scaled to zero, a name that does not exist) — or raises
    :class:`~meshbus.errors.LookupFailed` when it cannot tell (the nameserver or API failed);
    a :class:`~meshbus.discovery.Watcher` keeps its last good set then. Addresses are strings:
    a host (the caller supplies the port, as ``dns://name:port`` does) or ``host:port``.
    Each call asks afresh; a source keeps no cache.
    """

    async def resolve(self) -> frozenset[str]:
        """The addresses right now; empty for a definite "none"; LookupFailed if unknown."""
        ...


class DnsSource:
    """A DNS name, asked afresh at each ``resolve()`` (no cache).

    ``swarm_tasks`` chooses the name asked in Docker Swarm, where a service name is one
    virtual IP and ``tasks.<name>`` lists the replicas:

    - ``False`` (default): ask ``name`` only.
    - ``True``: ask ``tasks.<name>`` only.
    - ``"auto"``: ask both each time. If ``tasks.<name>`` answers with addresses, use them
      (this is Swarm); if it answers definitely with none (NXDOMAIN or no records — Compose, or
      Kubernetes), use ``name``. If the ``tasks.`` lookup fails (timeout, SERVFAIL), stay with
      whichever name the last good decision chose, so a flaky lookup cannot make the set jump
      between the virtual IP and the replicas.
    """

    def __init__(
        self,
        name: str,
        *,
        nameserver: NameserverSpec | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        family: Family = "any",
        swarm_tasks: bool | Literal["auto"] = False,
    ) -> None:
        if swarm_tasks not in (True, False, "auto"):
            raise ConfigurationError(f"swarm_tasks must be True, False or 'auto': {swarm_tasks!r}")
        self.name = name
        self.nameserver = nameserver
        self.timeout = timeout
        self.family: Family = family
        self.swarm_tasks = swarm_tasks
        self._using_tasks = swarm_tasks is True

    @property
    def tasks_name(self) -> str:
        """The Swarm name that lists the replicas: ``tasks.<name>``."""
        return f"tasks.{self.name}"

    @property
    def using_tasks(self) -> bool:
        """Whether the last good answer came from ``tasks.<name>``."""
        return self._using_tasks

    async def _ask(self, name: str) -> frozenset[str]:
        answer = await lookup(
            name, nameserver=self.nameserver, timeout=self.timeout, family=self.family
        )
        return frozenset(answer.addresses)

    async def resolve(self) -> frozenset[str]:
        """The name's addresses now (see the class docstring for ``swarm_tasks``)."""
        if self.swarm_tasks != "auto":
            return await self._ask(self.tasks_name if self.swarm_tasks else self.name)
        try:
            tasks = await self._ask(self.tasks_name)
        except LookupFailed as exc:
            if self._using_tasks:
                raise
            logger.debug("%s failed, staying with %s: %s", self.tasks_name, self.name, exc)
            return await self._ask(self.name)
        if tasks:
            if not self._using_tasks:
                logger.info("%s answers; using Swarm task addresses", self.tasks_name)
            self._using_tasks = True
            return tasks
        plain = await self._ask(self.name)
        self._using_tasks = False
        return plain

    def __repr__(self) -> str:
        return f"DnsSource({self.name!r}, swarm_tasks={self.swarm_tasks!r})"


class StaticSource:
    """A fixed list of addresses (``host`` or ``host:port``); ``resolve()`` always returns it."""

    def __init__(self, addresses: Iterable[str]) -> None:
        self.addresses = frozenset(address.strip() for address in addresses if address.strip())

    async def resolve(self) -> frozenset[str]:
        """The fixed list."""
        return self.addresses

    def __repr__(self) -> str:
        return f"StaticSource({sorted(self.addresses)!r})"


def source_from_spec(
    spec: str,
    *,
    nameserver: NameserverSpec | None = None,
    swarm_tasks: bool | Literal["auto"] = False,
) -> Source:
    """A source from a short string.

    - ``static:a:1,b:2`` — :class:`StaticSource` of ``a:1`` and ``b:2``;
    - ``dns:name`` or a bare ``name`` — :class:`DnsSource` (with ``nameserver`` and
      ``swarm_tasks``);
    - ``docker:...`` — reserved for the Docker Engine API by label: not built yet
      (:class:`~meshbus.errors.NotSupported`).
    """
    scheme, sep, rest = spec.partition(":")
    if not sep:
        scheme, rest = "dns", spec
    if scheme == "static":
        return StaticSource(rest.split(","))
    if scheme == "docker":
        raise NotSupported(
            "the Docker Engine API source (docker:label=...) is not built yet; "
            "use DNS names or a static: list"
        )
    if scheme != "dns":
        raise ConfigurationError(
            f"unknown discovery source {spec!r}: use a DNS name, dns:name or static:a:1,b:2"
        )
    if not rest:
        raise ConfigurationError(f"no name in discovery source {spec!r}")
    return DnsSource(rest, nameserver=nameserver, swarm_tasks=swarm_tasks)
