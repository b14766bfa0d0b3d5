"""Subscriptions of the ``kafka://`` channel: group members (``_member``: a consumer in the
group's Kafka consumer group, manual commits, retries through a retry topic) and broadcast
subscribers (``_broadcast``: a private reader of every matching partition, from its end).
Both read records as ``_records`` says, and reach their transport through its ``Host``
protocol."""

from __future__ import annotations

from meshbus_kafka._broadcast import BUFFER, Broadcast
from meshbus_kafka._member import DUE_HEADER, PAUSED_POLL, Member
from meshbus_kafka._records import Host

__all__ = ["BUFFER", "DUE_HEADER", "PAUSED_POLL", "Broadcast", "Host", "Member", "Subscription"]

Subscription = Broadcast | Member
"""A subscription of a ``kafka://`` transport."""
