"""The conformance suite: every channel is held to the contract (docs/contract.md) by these tests.

A channel runs it by subclassing :class:`ConformanceSuite` and giving a ``harness`` fixture::

    import pytest
    from meshbus.testing import ConformanceSuite, UrlHarness

    class TestMyChannel(ConformanceSuite):
        @pytest.fixture
        def harness(self):
            return UrlHarness("mychannel://localhost:1234")

Tests that need a capability (``durable``, ``ordered_by_key``, ``no_responders``,
``reconnects``) run where the channel declares it and skip, saying so, where it does not.
Each test is bounded in time. Overriding a shared test to excuse a channel needs
``pytest.mark.xfail(reason=...)``; never weaken the test itself.
"""

from meshbus.testing.conformance._close import CloseTests
from meshbus.testing.conformance._delivery import DeliveryTests
from meshbus.testing.conformance._publish import PublishTests
from meshbus.testing.conformance._request import RequestTests
from meshbus.testing.conformance._retry import RetryTests
from meshbus.testing.conformance._serve import ServeTests
from meshbus.testing.conformance._settle import SettleTests
from meshbus.testing.conformance._subjects import SubjectTests

__all__ = ["ConformanceSuite"]


class ConformanceSuite(
    SubjectTests,
    DeliveryTests,
    SettleTests,
    PublishTests,
    RequestTests,
    ServeTests,
    CloseTests,
    RetryTests,
):
    """Every contract test; subclass it with a ``harness`` fixture."""
