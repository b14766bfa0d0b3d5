"""meshbus: one asyncio API for services in containers to talk to each other.

The deployment picks the path by URL — ``memory://``, ``tcp://``, ``dns://``, ``file://``,
``nats://``, ``amqp://``, ``kafka://`` — and the code stays the same::

    import meshbus

    async with meshbus.connect("memory://app") as bus:
        async with bus.subscribe("orders.*", group="billing") as sub:
            await bus.publish("orders.created", {"id": 7})
            async for msg in sub:
                print(msg.json())
                await msg.ack()
                break
"""

from meshbus import errors
from meshbus.app import App
from meshbus.bus import Bus, Outgoing, connect
from meshbus.errors import *  # noqa: F403  (every error, as listed in meshbus.errors.__all__)
from meshbus.message import Message
from meshbus.retry import Retry
from meshbus.service import Handler, Service
from meshbus.subscription import Subscription
from meshbus.transport import Capabilities, Envelope, Transport, TransportSubscription

__version__ = "0.1.0"

__all__ = [
    "App",
    "Bus",
    "Capabilities",
    "Envelope",
    "Handler",
    "Message",
    "Outgoing",
    "Retry",
    "Service",
    "Subscription",
    "Transport",
    "TransportSubscription",
    "__version__",
    "connect",
]
__all__ += errors.__all__
