"""Finding the channel for a URL scheme.

Channels register under the entry-point group ``meshbus.transports``; the entry point's name is
the URL scheme and its value a ``factory(url, options) -> Transport``. The broker adapters are
separate distributions; asking for one of their schemes without them installed raises
``AdapterNotInstalled`` naming the package to install.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import cast

from meshbus.errors import AdapterNotInstalled, ConfigurationError, UnknownScheme
from meshbus.transport import TransportFactory

__all__ = [
    "ADAPTERS",
    "ENTRY_POINT_GROUP",
    "KNOWN_ADAPTERS",
    "TransportRegistry",
    "default_registry",
]

ENTRY_POINT_GROUP = "meshbus.transports"

ADAPTERS: Mapping[str, tuple[str, ...]] = {
    "nats": ("nats",),
    "rabbitmq": ("amqp", "amqps"),
    "kafka": ("kafka",),
}
"""meshbus's own adapter distributions, the one list of them: extra -> the URL schemes its
adapter serves. The adapter is the distribution ``meshbus-<extra>``, in ``adapters/<extra>``,
and ``pip install 'meshbus[<extra>]'`` installs it (the root ``pyproject.toml`` declares each
extra; a unit test holds both, and each adapter's entry points, to this table)."""

KNOWN_ADAPTERS: Mapping[str, tuple[str, str]] = {
    scheme: (f"meshbus-{extra}", extra) for extra, schemes in ADAPTERS.items() for scheme in schemes
}
"""Schemes served by meshbus's own adapter distributions: scheme -> (package, extra)."""


class TransportRegistry:
    """Scheme -> transport factory, from entry points plus any factories given directly."""

    def __init__(
        self,
        factories: Mapping[str, TransportFactory] | None = None,
        *,
        entry_points: bool = True,
    ) -> None:
        self._given = dict(factories or {})
        self._use_entry_points = entry_points
        self._loaded: dict[str, TransportFactory] = {}

    def _entry_points(self) -> dict[str, object]:
        if not self._use_entry_points:
            return {}
        return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}

    def schemes(self) -> list[str]:
        """Every scheme this registry can serve."""
        return sorted(set(self._given) | set(self._entry_points()))

    def factory(self, scheme: str) -> TransportFactory:
        """The factory for ``scheme``, or ``UnknownScheme`` / ``AdapterNotInstalled``."""
        scheme = scheme.lower()
        if scheme in self._given:
            return self._given[scheme]
        if scheme in self._loaded:
            return self._loaded[scheme]
        found = self._entry_points().get(scheme)
        if found is None:
            if scheme in KNOWN_ADAPTERS:
                package, extra = KNOWN_ADAPTERS[scheme]
                raise AdapterNotInstalled(scheme, package, extra, self.schemes())
            raise UnknownScheme(scheme, self.schemes())
        try:
            loaded = found.load()  # type: ignore[attr-defined]
        except ImportError as exc:
            package, extra = KNOWN_ADAPTERS.get(scheme, (f"the {scheme} channel", scheme))
            raise AdapterNotInstalled(scheme, package, extra, self.schemes()) from exc
        if not callable(loaded):
            raise ConfigurationError(
                f"entry point {scheme!r} in {ENTRY_POINT_GROUP} is not callable"
            )
        factory = cast(TransportFactory, loaded)
        self._loaded[scheme] = factory
        return factory


_default: TransportRegistry | None = None


def default_registry() -> TransportRegistry:
    """The registry ``meshbus.connect`` uses when none is given (entry points only)."""
    global _default
    if _default is None:
        _default = TransportRegistry()
    return _default
