"""Service discovery: resolve and watch the addresses behind a service name.

The resolver asks the nameserver itself — by default the ``nameserver`` lines of
``/etc/resolv.conf``, which inside a Docker container is the embedded DNS at ``127.0.0.11`` —
with no cache: Docker answers with a 600 s TTL and ``getaddrinfo`` reorders addresses, while
replicas come and go by the second. ::

    from meshbus import discovery

    addresses = await discovery.resolve("pricing")          # ['172.18.0.4', '172.18.0.5']

    async with discovery.Watcher("pricing", interval=5.0) as watcher:
        print(watcher.addresses)
        async for event in watcher.events():
            print("added", event.added, "removed", event.removed)

A definite "no such name / no addresses" (:class:`~meshbus.errors.NameNotFound`) is told apart
from a lookup that failed (:class:`~meshbus.errors.LookupFailed`, :class:`LookupTimeout
<meshbus.errors.LookupTimeout>`). Sources other than DNS sit behind the small :class:`Source`
protocol: :class:`StaticSource` (``static:a:1,b:2``); Kubernetes headless services are plain DNS
(give the full name, ``svc.namespace.svc.cluster.local``); the Docker Engine API by label is
reserved (``docker:``) and not built yet.
"""

from meshbus.discovery._client import DNS_PORT, Nameserver
from meshbus.discovery._resolver import (
    Answer,
    Family,
    NameserverSpec,
    default_nameservers,
    lookup,
    nameservers_from_resolv_conf,
    resolve,
    sort_addresses,
)
from meshbus.discovery._sources import DnsSource, Source, StaticSource, source_from_spec
from meshbus.discovery._watcher import Watcher, WatchEvent
from meshbus.errors import LookupFailed, LookupTimeout, NameNotFound

__all__ = [
    "DNS_PORT",
    "Answer",
    "DnsSource",
    "Family",
    "LookupFailed",
    "LookupTimeout",
    "NameNotFound",
    "Nameserver",
    "NameserverSpec",
    "Source",
    "StaticSource",
    "WatchEvent",
    "Watcher",
    "default_nameservers",
    "lookup",
    "nameservers_from_resolv_conf",
    "resolve",
    "sort_addresses",
    "source_from_spec",
]
