"""Ingest adapters: migration import files, HTTP batches, gateways and the meter simulator."""


class IngestError(Exception):
    """Input that cannot be ingested at all (e.g. a file that is not an import document)."""
