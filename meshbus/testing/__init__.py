"""Testing support shipped with meshbus: the conformance suite every channel passes, harnesses,
and (in :mod:`meshbus.testing.brokers`) real brokers started as local processes.

Importing this package needs pytest and pytest-asyncio (``pip install 'meshbus[testing]'``).
"""

from meshbus.testing.conformance import ConformanceSuite
from meshbus.testing.harness import (
    ChannelHarness,
    ProxiedHarness,
    Session,
    UrlHarness,
    contract,
)

__all__ = [
    "ChannelHarness",
    "ConformanceSuite",
    "ProxiedHarness",
    "Session",
    "UrlHarness",
    "contract",
]
