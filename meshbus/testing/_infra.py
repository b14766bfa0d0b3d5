"""What to do when a test needs something this machine does not have.

Locally, a missing broker binary or Docker engine skips the test with a message that says how to
install it. Under the CI switch (``MESHBUS_REQUIRE_INFRA=1``, set by ``.ci/run``) the same
situation fails the test, so that a green run means every tier really ran.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

REQUIRE_INFRA_ENV = "MESHBUS_REQUIRE_INFRA"


def infra_required() -> bool:
    """True when missing infrastructure must fail tests instead of skipping them."""
    return os.environ.get(REQUIRE_INFRA_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def missing(what: str, how_to_install: str) -> NoReturn:
    """Skip (locally) or fail (under the CI switch) because ``what`` is not available here."""
    message = f"{what} is not available: {how_to_install}"
    if infra_required():
        pytest.fail(f"{message} ({REQUIRE_INFRA_ENV} is set, so this fails instead of skipping)")
    pytest.skip(message)
