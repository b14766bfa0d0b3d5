"""The file channel against the whole contract, in both notification modes.

Every bus of one harness works on the same directory, as processes sharing a volume would.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from meshbus.testing import ConformanceSuite, UrlHarness


class TestFileConformance(ConformanceSuite):
    """file:// declares durable, ordered_by_key and no_responders."""

    @pytest.fixture(params=["inotify", "poll"])
    def harness(self, request: pytest.FixtureRequest, tmp_path: Path) -> UrlHarness:
        return UrlHarness(f"file://{tmp_path}?notify={request.param}&max_payload=2097152&lease=5")
