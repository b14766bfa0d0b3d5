"""``meshbus_kafka._compat``: aiokafka's internals, checked at import; the metadata shortcut
and its public path give the same answer, MESHBUS_SAFE=1 turns the shortcut off, and without
the internals fencing needs, a transport does not start."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from meshbus.errors import NotSupported
from meshbus.fastpath import SAFE
from meshbus.testing.brokers import TansuBroker
from meshbus_kafka import KafkaTransport, _compat


def test_the_internals_are_found_in_the_installed_aiokafka() -> None:
    assert _compat.METADATA is not SAFE
    assert _compat.ABANDON


def test_meshbus_safe_turns_the_shortcut_off_and_keeps_fencing() -> None:
    probe = "from meshbus_kafka import _compat; print(_compat.METADATA, _compat.ABANDON)"
    env = {**os.environ, "MESHBUS_SAFE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True"]


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_partitions_by_the_consumer_and_by_the_admin_client_agree(
    kafka_broker: TansuBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    transport = KafkaTransport(kafka_broker.url, {"idempotence": False})
    await transport.start()
    try:
        topic, absent = f"p{uuid.uuid4().hex[:10]}", f"n{uuid.uuid4().hex[:10]}"
        await transport.ensure_topic(topic, partitions=3)
        consumer = transport.make_consumer(group_id=None, auto_offset_reset="earliest")
        await consumer.start()
        try:
            found = {}
            for fast in (True, False):
                monkeypatch.setattr(_compat, "METADATA", fast)
                for refresh in (False, True):
                    tps = await _compat.partitions(
                        consumer, transport._admin, [topic, absent], refresh=refresh
                    )
                    found[fast, refresh] = sorted((tp.topic, tp.partition) for tp in tps)
        finally:
            await consumer.stop()
        expected = [(topic, 0), (topic, 1), (topic, 2)]
        assert found == dict.fromkeys(found, expected)
    finally:
        await transport.close(1.0)


@pytest.mark.asyncio
async def test_without_what_fencing_needs_a_transport_does_not_start(
    kafka_broker: TansuBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_compat, "ABANDON", False)
    transport = KafkaTransport(kafka_broker.url, {"idempotence": False})
    with pytest.raises(NotSupported, match="cannot drop what a failed producer holds"):
        await transport.start()
    await transport.close(0)
