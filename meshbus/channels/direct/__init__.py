"""The direct channels, ``tcp://`` and ``dns://`` (being built): brokerless peers speaking the
protocol of docs/direct-protocol.md. So far: the frame codec, :mod:`.frames`."""
