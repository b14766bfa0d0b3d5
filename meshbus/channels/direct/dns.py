"""``dns://service:port`` — publish straight to every replica a DNS name resolves to.

Inside Docker the name is resolved by the embedded DNS (127.0.0.11), through
:mod:`meshbus.discovery` and without a cache, every ``interval`` seconds (jittered) and at once
(rate limited) when a connection fails. New addresses are dialled; an address that vanishes
from the answers is dropped only when it was absent repeatedly *and* a connection to it failed,
and then drained: nothing new is sent to it, what it has in flight gets ``drain`` seconds to be
accepted. A failed lookup keeps the last good set. Everything else is the ``tcp://`` channel:
broadcast to every replica with a matching subscription, one replica per group.

Options, besides the ``tcp://`` ones: ``nameserver`` (``host:port``; default: the system's
resolv.conf), ``interval`` (5 s), ``jitter`` (0.2), ``absent_threshold`` (2),
``min_refresh`` (1 s), ``swarm_tasks`` (``false``, ``true`` or ``auto``: ask ``tasks.<name>``,
the replicas behind a Swarm service's virtual IP), ``drain`` (10 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any, Literal

from meshbus.channels.direct.dialer import TcpTransport
from meshbus.channels.direct.peer import Peer
from meshbus.discovery import DnsSource, Nameserver, Watcher
from meshbus.errors import ConnectFailed, DiscoveryError, InvalidURL

__all__ = ["DnsTransport"]

log = logging.getLogger("meshbus.direct")

_EXTRA = (
    "nameserver",
    "interval",
    "jitter",
    "absent_threshold",
    "min_refresh",
    "swarm_tasks",
    "drain",
)


class DnsTransport(TcpTransport):
    """The ``dns://`` channel (see the module docstring)."""

    extra_options = _EXTRA

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(url, options)
        if len(self.config.addresses) != 1:
            raise InvalidURL(url, "dns:// names one service: dns://name:port")
        (self.name, self.port), *_ = self.config.addresses
        extra = self.config.extra
        try:
            self.drain = float(extra.get("drain", 10.0))
            self._watcher = Watcher(
                DnsSource(
                    self.name,
                    nameserver=_nameserver(extra.get("nameserver")),
                    swarm_tasks=_swarm(extra.get("swarm_tasks", False)),
                ),
                interval=float(extra.get("interval", 5.0)),
                jitter=float(extra.get("jitter", 0.2)),
                absent_threshold=int(extra.get("absent_threshold", 2)),
                min_refresh_interval=float(extra.get("min_refresh", 1.0)),
            )
        except (TypeError, ValueError) as exc:
            raise InvalidURL(url, f"a dns:// option is not valid: {exc}") from exc
        self._by_address: dict[str, Peer] = {}
        self._follow: asyncio.Task[None] | None = None
        self._draining: set[asyncio.Task[None]] = set()

    @property
    def addresses(self) -> frozenset[str]:
        """The replica addresses currently dialled."""
        return frozenset(self._by_address)

    async def start(self) -> None:
        try:
            await self._watcher.start()
        except DiscoveryError as exc:
            raise ConnectFailed(f"cannot resolve {self.name!r}: {exc}") from exc
        if not self._watcher.addresses:
            await self._watcher.close()
            raise ConnectFailed(
                f"{self.name!r} resolves to no address: is the service up, and is this "
                "container on the same Docker network (not the default bridge)?"
            )
        for address in sorted(self._watcher.addresses):
            self._dial(address)
        self._follow = asyncio.create_task(self._follow_changes())
        await self._first_connection()

    def _dial(self, address: str) -> None:
        if address not in self._by_address:
            self._by_address[address] = self._add_peer(address, self.port)

    async def _follow_changes(self) -> None:
        async for event in self._watcher.events():
            for address in sorted(event.added):
                log.info("dns://%s: replica %s appeared", self.name, address)
                self._dial(address)
            for address in sorted(event.removed):
                peer = self._by_address.pop(address, None)
                if peer is not None:
                    log.info("dns://%s: replica %s is gone; draining it", self.name, address)
                    task = asyncio.create_task(self._drop_peer(peer, self.drain))
                    self._draining.add(task)
                    task.add_done_callback(self._draining.discard)

    def _peer_state(self, peer: Peer, up: bool) -> None:
        if up:
            self._watcher.reachable(peer.host)
        else:
            self._watcher.suspect(peer.host)  # also asks for a fresh lookup (rate limited)

    async def close(self, timeout: float) -> None:
        if self._follow is not None:
            self._follow.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follow
        await self._watcher.close()
        await asyncio.gather(*self._draining, return_exceptions=True)
        await super().close(timeout)


def _nameserver(value: Any) -> Nameserver | None:
    if value is None or isinstance(value, Nameserver):
        return value
    host, _, port = str(value).rpartition(":")
    if not host:
        return Nameserver(str(value), 53)
    return Nameserver(host.strip("[]"), int(port))


def _swarm(value: Any) -> bool | Literal["auto"]:
    text = str(value).lower()
    if text == "auto":
        return "auto"
    if text in {"true", "1", "yes"}:
        return True
    if text in {"false", "0", "no"}:
        return False
    raise ValueError(f"swarm_tasks is true, false or auto, not {value!r}")
