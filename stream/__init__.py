"""The streaming chain: validate → intervals → rate → store (in process or on Kafka/Faust)."""


class StreamError(RuntimeError):
    """Root of every error raised by the stream adapters."""
