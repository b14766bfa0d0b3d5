"""The kafka adapter's tests need it installed (the broker fixtures come from
tests/conftest.py)."""

import pytest

pytest.importorskip("meshbus_kafka", reason="pip install -e adapters/kafka")
