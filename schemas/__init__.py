"""Event contracts shared by every producer and consumer (topics, JSON shapes, Python types)."""


class SchemaError(ValueError):
    """A message does not match its contract; the message says which field and why."""
