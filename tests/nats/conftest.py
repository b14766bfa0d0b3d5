"""Real NATS servers for the adapter tests (fixtures of ``meshbus.testing.pytest_plugin``)."""

import pytest

from meshbus.testing.pytest_plugin import nats_server, nats_server_factory

pytest.importorskip("meshbus_nats", reason="pip install -e adapters/nats")

__all__ = ["nats_server", "nats_server_factory"]
