"""Settings of a ``kafka://`` channel, from its URL query and the bus's ``options["kafka"]``."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from meshbus.errors import InvalidURL
from meshbus.kit import channel_settings, move_typed, reject_unknown, split_hosts, take_tls

__all__ = ["KafkaOptions"]

_INTS = (
    "partitions",
    "replication",
    "linger_ms",
    "max_batch_size",
    "max_payload",
    "session_timeout_ms",
    "heartbeat_interval_ms",
    "fetch_max_wait_ms",
    "max_deliver",
)
_FLOATS = ("connect_timeout", "commit_interval", "discover_interval", "rebalance_grace")
_STRS = ("security_protocol", "sasl_mechanism", "client_id")


@dataclass(frozen=True, slots=True)
class KafkaOptions:
    """What a ``kafka://`` channel is configured with (see the README's Kafka section)."""

    bootstrap_servers: list[str]
    """``host:port`` of each bootstrap broker, from the URL."""
    partitions: int = 4
    """Partitions of the topics meshbus creates (where a subject's topic is absent)."""
    replication: int = 1
    """Replication factor of the topics meshbus creates."""
    idempotence: bool = True
    """Idempotent producer (``enable_idempotence``); ``acks=all`` always."""
    linger_ms: int = 5
    """Milliseconds the producer waits to fill a batch."""
    max_batch_size: int = 1024 * 1024
    """Bytes per producer batch (aiokafka's 16 KiB default is ~7x slower)."""
    max_payload: int = 1_000_000
    """Largest payload; a record (payload, key and headers) may use 32 KiB more."""
    session_timeout_ms: int = 10_000
    """Consumer group session timeout."""
    heartbeat_interval_ms: int = 1_000
    """Consumer group heartbeat interval (also how fast a member notices a rebalance)."""
    fetch_max_wait_ms: int = 50
    """Longest a fetch waits for data (bounds delivery latency on brokers that wait it out)."""
    max_deliver: int = -1
    """Deliveries of one message to a group before it is dead-lettered (-1: no limit)."""
    connect_timeout: float = 5.0
    """Seconds for the first connection; failing it raises ``ConnectFailed``."""
    commit_interval: float = 0.1
    """Seconds between offset commits of a group member (also on close and rebalance)."""
    discover_interval: float = 0.5
    """Seconds between looks for new topics matching a wildcard subscription."""
    rebalance_grace: float = 1.0
    """Seconds a member waits, when its partitions are revoked, for delivered messages to be
    settled before giving them back through the retry topic."""
    security_protocol: str = "PLAINTEXT"
    """``PLAINTEXT``, ``SSL``, ``SASL_PLAINTEXT`` or ``SASL_SSL``."""
    sasl_mechanism: str | None = None
    """``PLAIN``, ``SCRAM-SHA-256``, ``SCRAM-SHA-512`` (user and password from the URL)."""
    sasl_username: str | None = None
    sasl_password: str | None = None
    client_id: str = "meshbus"
    tls: ssl.SSLContext | None = None
    """TLS context (``options={"kafka": {"tls": ctx}}``); sets ``SSL`` / ``SASL_SSL``."""
    client_options: Mapping[str, Any] = field(default_factory=dict)
    """Further keyword arguments for every aiokafka client (e.g. ``sasl_oauth_token_provider``)."""

    @classmethod
    def parse(cls, url: str, options: Mapping[str, Any]) -> KafkaOptions:
        """Read ``kafka://[user:pass@]host:port[,host:port...]?option=value``."""
        parts, settings = channel_settings(url, options)
        if not parts.netloc:
            raise InvalidURL(url, "kafka:// needs a host, e.g. kafka://localhost:9092")
        userinfo, hosts = split_hosts(parts.netloc)
        servers = [host if ":" in host else f"{host}:9092" for host in hosts]
        if not servers:
            raise InvalidURL(url, "kafka:// needs at least one host")
        values: dict[str, Any] = {"bootstrap_servers": servers}
        if userinfo:
            user, _, password = userinfo.partition(":")
            values["sasl_username"] = unquote(user)
            values["sasl_password"] = unquote(password)
        try:
            move_typed(
                settings, values, ints=_INTS, floats=_FLOATS, strs=_STRS, flags=("idempotence",)
            )
        except (TypeError, ValueError) as exc:
            raise InvalidURL(url, f"bad kafka:// option: {exc}") from exc
        take_tls(url, "kafka", settings, values)
        if "client_options" in settings:
            values["client_options"] = dict(settings.pop("client_options"))
        reject_unknown(url, "kafka", settings)
        made = cls(**values)
        made._check(url)
        return made

    def _check(self, url: str) -> None:
        if min(self.partitions, self.replication, self.max_batch_size, self.max_payload) < 1:
            raise InvalidURL(url, "partitions, replication, max_batch_size, max_payload >= 1")
        if self.max_deliver == 0 or self.max_deliver < -1:
            raise InvalidURL(url, "max_deliver is -1 or at least 1")
        if min(self.connect_timeout, self.commit_interval, self.discover_interval) <= 0:
            raise InvalidURL(url, "connect_timeout, commit_interval, discover_interval > 0")

    def client_kwargs(self) -> dict[str, Any]:
        """Connection keywords shared by the producer, consumers and admin client."""
        protocol = self.security_protocol
        if self.tls is not None and protocol == "PLAINTEXT":
            protocol = "SSL"
        if self.sasl_mechanism is not None and protocol in ("PLAINTEXT", "SSL"):
            protocol = "SASL_" + protocol
        kwargs: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "client_id": self.client_id,
            "security_protocol": protocol,
        }
        if self.tls is not None:
            kwargs["ssl_context"] = self.tls
        if self.sasl_mechanism is not None:
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.sasl_username
            kwargs["sasl_plain_password"] = self.sasl_password
        kwargs.update(self.client_options)
        return kwargs
