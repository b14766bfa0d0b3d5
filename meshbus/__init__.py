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

from meshbus.bus import Bus, Outgoing, connect
from meshbus.errors import (
    AdapterNotInstalled,
    AlreadySettled,
    AuthenticationFailed,
    Closed,
    CodecError,
    ConfigurationError,
    ConnectFailed,
    ConnectionLost,
    CorruptMessage,
    DecodeError,
    DiscoveryError,
    DockerEngineError,
    EncodeError,
    InvalidHeader,
    InvalidRoutes,
    InvalidSubject,
    InvalidURL,
    LookupFailed,
    LookupTimeout,
    MeshbusError,
    MeshbusTimeout,
    NameNotFound,
    NoResponders,
    NotARequest,
    NotStarted,
    NotSupported,
    PayloadTooLarge,
    ProtocolError,
    PublishRejected,
    PublishTimeout,
    RequestTimeout,
    SettlementError,
    TransportError,
    UnknownScheme,
)
from meshbus.message import Message
from meshbus.service import Handler, Service
from meshbus.subscription import Subscription
from meshbus.transport import Capabilities, Envelope, Transport, TransportSubscription

__version__ = "0.1.0"

__all__ = [
    "AdapterNotInstalled",
    "AlreadySettled",
    "AuthenticationFailed",
    "Bus",
    "Capabilities",
    "Closed",
    "CodecError",
    "ConfigurationError",
    "ConnectFailed",
    "ConnectionLost",
    "CorruptMessage",
    "DecodeError",
    "DiscoveryError",
    "DockerEngineError",
    "EncodeError",
    "Envelope",
    "Handler",
    "InvalidHeader",
    "InvalidRoutes",
    "InvalidSubject",
    "InvalidURL",
    "LookupFailed",
    "LookupTimeout",
    "MeshbusError",
    "MeshbusTimeout",
    "Message",
    "NameNotFound",
    "NoResponders",
    "NotARequest",
    "NotStarted",
    "NotSupported",
    "Outgoing",
    "PayloadTooLarge",
    "ProtocolError",
    "PublishRejected",
    "PublishTimeout",
    "RequestTimeout",
    "Service",
    "SettlementError",
    "Subscription",
    "Transport",
    "TransportError",
    "TransportSubscription",
    "UnknownScheme",
    "__version__",
    "connect",
]
