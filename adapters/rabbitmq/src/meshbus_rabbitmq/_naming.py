"""How meshbus names map onto RabbitMQ: binding keys, and the queues meshbus declares.

Every name starts with ``<queue_prefix><exchange>.`` so that applications that use different
exchanges (or prefixes) on one vhost never share a queue by accident; two applications that use
the same exchange and the same group name on the same pattern *are* the same group.
"""

from __future__ import annotations

import hashlib

__all__ = [
    "binding_key",
    "broadcast_queue",
    "delay_queue",
    "group_queue",
    "request_exchange",
    "request_queue",
    "unrouted_exchange",
]

_MAX_NAME = 255


def binding_key(pattern: str) -> str:
    """The topic-exchange binding key for a meshbus pattern.

    ``*`` is the same in both. meshbus's ``>`` is one or more trailing tokens, AMQP's ``#`` is
    zero or more, so ``>`` becomes ``*.#`` (one token, then any number): ``a.>`` binds as
    ``a.*.#``, which matches ``a.b`` and ``a.b.c`` but not ``a``. Nothing needs filtering on
    receipt.
    """
    if pattern.endswith(">"):
        return pattern[:-1] + "*.#"
    return pattern


# Queue names may hold only [A-Za-z0-9-_.:@#,/+ ] (clients check), so a pattern's wildcards are
# spelled as AMQP spells them: ``*`` as ``+`` and ``>`` as ``#``. Neither can be in a meshbus
# token, so the mapping stays one-to-one; ``@`` (also never in a token) marks a digest.
_WILDCARDS = str.maketrans({"*": "+", ">": "#"})


def _fit(name: str, tail: str) -> str:
    """``name + tail`` (wildcards respelled), or with ``tail`` replaced by a digest where that
    is over 255 bytes."""
    full = name + tail.translate(_WILDCARDS)
    if len(full.encode()) <= _MAX_NAME:
        return full
    return name + "@" + hashlib.sha1(tail.encode()).hexdigest()[:20]


def group_queue(prefix: str, exchange: str, group: str, pattern: str) -> str:
    """The durable quorum queue of ``group`` on ``pattern``:
    ``<prefix><exchange>.g.<group>.<pattern>`` (the pattern part hashed when too long)."""
    return _fit(f"{prefix}{exchange}.g.{group}.", pattern)


def request_queue(prefix: str, exchange: str, group: str, pattern: str) -> str:
    """The classic, non-durable queue where ``group``'s members take requests on ``pattern``:
    ``<prefix><exchange>.r.<group>.<pattern>`` (the pattern part hashed when too long)."""
    return _fit(f"{prefix}{exchange}.r.{group}.", pattern)


def request_exchange(exchange: str) -> str:
    """The topic exchange that carries requests: ``<exchange>.requests``. Requests are live
    (their asker waits), so they stay out of the groups' durable queues."""
    return f"{exchange}.requests"


def unrouted_exchange(exchange: str) -> str:
    """The headers exchange where requests that no queue takes go (the request exchange's
    alternate exchange): ``<exchange>.requests.unrouted``. Each connection's reply queue is
    bound there on its own name, so an unroutable request comes back to its asker."""
    return f"{request_exchange(exchange)}.unrouted"


def broadcast_queue(prefix: str, exchange: str, token: str) -> str:
    """An exclusive auto-delete queue of one broadcast subscription."""
    return f"{prefix}{exchange}.b.{token}"


def delay_queue(target: str, delay_ms: int) -> str:
    """The TTL queue that holds messages nacked with ``delay_ms`` for the queue ``target``,
    then dead-letters them back into it."""
    digest = hashlib.sha1(target.encode()).hexdigest()[:16]
    return _fit(f"{target[:180]}.delay.{delay_ms}.", digest)
