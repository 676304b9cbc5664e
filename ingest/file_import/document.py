"""The import document: check its shape, then load the sections in dependency order."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
import psycopg

from ingest import IngestError
from ingest.file_import.contracts import load_contracts
from ingest.file_import.meters import load_meters
from ingest.file_import.parties import CUSTOMERS, METERING_POINTS
from ingest.file_import.report import SECTIONS, ImportReport
from ingest.file_import.simple import load_rows
from ingest.file_import.streams import load_payments, load_readings, queue_readings
from ingest.file_import.tariffs import load_tariffs


def check_document(doc: Any) -> dict[str, Sequence[Any]]:
    """The document's sections (missing ones empty); IngestError if its shape is wrong."""
    if not isinstance(doc, Mapping):
        raise IngestError(f"the import document must be a JSON object, got {type(doc).__name__}")
    unknown = sorted(str(k) for k in doc if k not in SECTIONS)
    if unknown:
        raise IngestError(
            f"unknown top-level key(s) {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(SECTIONS)}"
        )
    out: dict[str, Sequence[Any]] = {}
    for name in SECTIONS:
        value = doc.get(name, [])
        if value is None:
            value = []
        if not isinstance(value, list):
            raise IngestError(f"{name}: must be a list of records, got {type(value).__name__}")
        out[name] = value
    return out


def import_document(
    conn: psycopg.Connection,
    doc: Mapping[str, Any],
    *,
    now: int,
    channel: str = "file",
    read_producer: Any | None = None,
) -> ImportReport:
    """Load one import document in one transaction; bad records are reported, not fatal.

    `now` (UTC epoch seconds) stamps received reads and bounds "read in the future".
    Raises IngestError, writing nothing, when the document itself is malformed.
    With a `read_producer` (Kafka configured), the readings are sent to the reads topic
    after the master data has committed, so the workers find their meters.
    """
    sections = check_document(doc)
    report = ImportReport()
    with conn.transaction():
        load_tariffs(conn, sections["tariffs"], report)
        from stream.pipeline import load_catalog

        catalog = load_catalog(conn)
        load_rows(conn, CUSTOMERS, sections["customers"], report)
        load_rows(conn, METERING_POINTS, sections["metering_points"], report)
        load_meters(conn, sections["meters"], report)
        load_contracts(conn, sections["contracts"], report, catalog)
        if sections["readings"] and read_producer is None:
            load_readings(
                conn, sections["readings"], report, now=now, channel=channel, catalog=catalog
            )
        if sections["payments"]:
            load_payments(conn, sections["payments"], report, channel=channel)
    if read_producer is not None and sections["readings"]:
        queue_readings(read_producer, sections["readings"], report)
    return report


def read_document(path: Path) -> Any:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise IngestError(f"{path}: cannot read the file: {exc.strerror or exc}") from exc
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise IngestError(f"{path.name}: not valid JSON: {exc}") from exc


def import_file(
    conn: psycopg.Connection, path: Path, *, now: int, read_producer: Any | None = None
) -> ImportReport:
    """Read a JSON import file and load it (see `import_document`)."""
    return import_document(conn, read_document(Path(path)), now=now, read_producer=read_producer)
