"""Testing support shipped with meshbus: the conformance suite every channel passes, harnesses,
and (in :mod:`meshbus.testing.brokers`) real brokers started as local processes.

Importing this package needs pytest and pytest-asyncio (``pip install 'meshbus[testing]'``).
"""

from meshbus.testing.conformance import ConformanceSuite
from meshbus.testing.harness import ChannelHarness, Session, UrlHarness, contract

__all__ = ["ChannelHarness", "ConformanceSuite", "Session", "UrlHarness", "contract"]
