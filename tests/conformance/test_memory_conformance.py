"""The memory channel against the whole contract."""

from __future__ import annotations

import uuid

import pytest

from meshbus.testing import ConformanceSuite, UrlHarness


class TestMemoryConformance(ConformanceSuite):
    """memory:// declares durable, ordered_by_key and no_responders."""

    @pytest.fixture
    def harness(self) -> UrlHarness:
        return UrlHarness(f"memory://conformance-{uuid.uuid4().hex}?max_payload=2097152")
