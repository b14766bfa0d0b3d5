"""The direct channels: brokerless peers speaking the protocol of docs/direct-protocol.md.

``tcp://host:port[,host:port...]`` dials the listed peers (:class:`TcpTransport`);
``dns://service:port`` dials every replica the name resolves to (:class:`DnsTransport`);
``listen="tcp://0.0.0.0:7000"`` serves this process's subscriptions (:class:`DirectListener`).
"""

from meshbus.channels.direct.dialer import TcpTransport
from meshbus.channels.direct.dns import DnsTransport
from meshbus.channels.direct.listener import DirectListener

__all__ = ["DirectListener", "DnsTransport", "TcpTransport"]
