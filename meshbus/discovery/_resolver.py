"""Resolve a name to addresses with meshbus's own DNS queries: no cache, no reordering.

Docker's embedded DNS (127.0.0.11) answers with a 600 s TTL, and ``getaddrinfo`` reorders
addresses and may cache them; a service whose replicas come and go needs every answer fresh.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from meshbus.discovery._client import Nameserver, query
from meshbus.discovery._wire import RCODE_NAMES, TYPE_A, TYPE_AAAA, Response, encode_name
from meshbus.errors import ConfigurationError, LookupFailed, NameNotFound

__all__ = [
    "Answer",
    "Family",
    "NameserverSpec",
    "default_nameservers",
    "lookup",
    "nameservers_from_resolv_conf",
    "resolve",
    "sort_addresses",
]

Family = Literal["any", "ipv4", "ipv6"]
"""Which records to ask for: ``"any"`` (A and AAAA), ``"ipv4"`` (A) or ``"ipv6"`` (AAAA)."""

NameserverSpec = Nameserver | tuple[str, int] | Sequence[Nameserver | tuple[str, int]]
"""One nameserver ``(host, port)``, or several to try in order."""

DEFAULT_TIMEOUT = 2.0
_RCODE_NOERROR = 0
_RCODE_NXDOMAIN = 3


@dataclass(frozen=True, slots=True)
class Answer:
    """A definite answer for a name: its addresses (sorted), possibly none.

    ``nxdomain`` is ``True`` when the nameserver said the name does not exist at all; an empty
    ``addresses`` with ``nxdomain`` ``False`` means the name exists but has no A/AAAA records.
    """

    name: str
    addresses: tuple[str, ...]
    nxdomain: bool = False


def nameservers_from_resolv_conf(path: str = "/etc/resolv.conf") -> list[Nameserver]:
    """The ``nameserver`` lines of a resolv.conf file, in order (port 53).

    Inside a Docker container on a user-defined network this is ``127.0.0.11``. A missing or
    unreadable file, comments and lines that are not IP addresses are skipped.
    """
    try:
        with open(path, encoding="utf-8", errors="replace") as conf:
            lines = conf.read().splitlines()
    except OSError:
        return []
    found: list[Nameserver] = []
    for line in lines:
        fields = line.split()
        if len(fields) < 2 or fields[0] != "nameserver":
            continue
        try:
            ipaddress.ip_address(fields[1])
        except ValueError:
            continue
        found.append(Nameserver(fields[1]))
    return found


def default_nameservers(path: str = "/etc/resolv.conf") -> list[Nameserver]:
    """The system's nameservers; ``127.0.0.1`` when resolv.conf lists none (as glibc does)."""
    return nameservers_from_resolv_conf(path) or [Nameserver("127.0.0.1")]


def _nameservers(spec: NameserverSpec | None) -> list[Nameserver]:
    if spec is None:
        return default_nameservers()
    if len(spec) == 2 and isinstance(spec[0], str) and isinstance(spec[1], int):
        return [Nameserver(spec[0], spec[1])]
    servers = [Nameserver(*item) for item in spec if not isinstance(item, str | int)]
    if not servers or len(servers) != len(spec):
        raise ConfigurationError(f"nameserver must be (host, port) or a list of them: {spec!r}")
    return servers


def sort_addresses(addresses: Sequence[str] | frozenset[str] | set[str]) -> list[str]:
    """IP addresses in a stable order: IPv4 before IPv6, then numerically; others last."""

    def key(address: str) -> tuple[int, int, str]:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return (9, 0, address)
        return (ip.version, int(ip), address)

    return sorted(set(addresses), key=key)


def _literal(name: str, family: Family) -> list[str] | None:
    """The answer for a name that needs no query (an IP literal, ``localhost``), else None."""
    bare = name.strip("[]")
    try:
        return [str(ipaddress.ip_address(bare))]
    except ValueError:
        pass
    if name.rstrip(".").lower() == "localhost":
        return ["::1"] if family == "ipv6" else ["127.0.0.1"]
    return None


def _check(name: str, response: Response) -> None:
    if response.rcode not in (_RCODE_NOERROR, _RCODE_NXDOMAIN):
        text = RCODE_NAMES.get(response.rcode, f"RCODE {response.rcode}")
        raise LookupFailed(name, f"the nameserver answered {text}", response.rcode)


async def _ask(server: Nameserver, name: str, family: Family, timeout: float) -> Answer:
    qtypes = {"any": (TYPE_A, TYPE_AAAA), "ipv4": (TYPE_A,), "ipv6": (TYPE_AAAA,)}[family]
    results = await asyncio.gather(
        *(query(server, name, qtype, timeout) for qtype in qtypes), return_exceptions=True
    )
    responses: list[Response] = []
    for result in results:
        if isinstance(result, BaseException):
            raise result
        _check(name, result)
        responses.append(result)
    addresses = [address for response in responses for address in response.addresses]
    nxdomain = all(response.rcode == _RCODE_NXDOMAIN for response in responses)
    return Answer(name, tuple(sort_addresses(addresses)), nxdomain and not addresses)


async def lookup(
    name: str,
    *,
    nameserver: NameserverSpec | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    family: Family = "any",
) -> Answer:
    """Ask the nameserver(s) for ``name``'s addresses, fresh (no cache); a typed answer.

    A and AAAA are asked together (``family="any"``); the answer is definite only if both
    are, so a lookup never reports a partial set. Nameservers are tried in order until one
    gives a definite answer; ``timeout`` applies to each. Raises
    :class:`~meshbus.errors.LookupFailed` (SERVFAIL, REFUSED, malformed or truncated replies,
    network errors) or its subclass :class:`~meshbus.errors.LookupTimeout`.
    """
    literal = _literal(name, family)
    if literal is not None:
        return Answer(name, tuple(literal))
    try:
        encode_name(name)
    except ValueError as exc:
        raise ConfigurationError(f"{name!r} is not a DNS name: {exc}") from exc
    if not name.strip("."):
        raise ConfigurationError("an empty name cannot be resolved")
    failure: LookupFailed | None = None
    for server in _nameservers(nameserver):
        try:
            return await _ask(server, name, family, timeout)
        except LookupFailed as exc:
            failure = failure or exc
    assert failure is not None
    raise failure


async def resolve(
    name: str,
    *,
    nameserver: NameserverSpec | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    family: Family = "any",
) -> list[str]:
    """Resolve ``name`` to its addresses, sorted (IPv4 first), with no cache.

    An IP literal resolves to itself and ``localhost`` to ``127.0.0.1`` without a query.
    ``nameserver`` is ``(host, port)`` or a list of them; by default the ``nameserver`` lines of
    ``/etc/resolv.conf`` (127.0.0.11 inside Docker). Search domains are not applied: give
    Kubernetes names in full (``svc.namespace.svc.cluster.local``).

    Raises :class:`~meshbus.errors.NameNotFound` when the answer is a definite "no addresses"
    (NXDOMAIN or no records), :class:`~meshbus.errors.LookupFailed` when there is no usable
    answer (SERVFAIL, REFUSED, malformed) and :class:`~meshbus.errors.LookupTimeout` when no
    answer came in time.
    """
    answer = await lookup(name, nameserver=nameserver, timeout=timeout, family=family)
    if not answer.addresses:
        raise NameNotFound(name, answer.nxdomain)
    return list(answer.addresses)
