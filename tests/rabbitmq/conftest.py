"""The rabbitmq adapter's tests need it installed (the broker fixtures come from
tests/conftest.py)."""

import pytest

pytest.importorskip("meshbus_rabbitmq", reason="pip install -e adapters/rabbitmq")
