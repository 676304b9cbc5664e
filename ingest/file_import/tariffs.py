"""Section `tariffs`: catalog versions, immutable once loaded."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import psycopg
from psycopg.types.json import Jsonb

from ingest.file_import.fields import key_of
from ingest.file_import.report import ImportReport
from rating import RatingError
from rating.catalog import parse_tariff

SECTION = "tariffs"


def load_tariffs(conn: psycopg.Connection, records: Sequence[Any], report: ImportReport) -> None:
    """Insert new (tariff_code, valid_from) versions; an identical one is unchanged, a
    different one under the same key is rejected (publish a new valid_from instead)."""
    new: dict[tuple[str, str], tuple[int, dict[str, Any], str]] = {}
    for i, rec in enumerate(records):
        try:
            version = parse_tariff(rec)
            raw = orjson.dumps(rec)
            if b"\\u0000" in raw:
                raise ValueError("tariff: text must not contain NUL characters (\\u0000)")
            doc = orjson.loads(raw)  # plain JSON values, as jsonb returns them
        except (RatingError, ValueError, TypeError) as exc:
            report.reject(SECTION, i, key_of(rec, "tariff_code"), str(exc))
            continue
        key = (version.tariff_code, version.valid_from.isoformat())
        if key in new:
            report.reject(
                SECTION,
                i,
                version.tariff_code,
                f"duplicate tariff_code {key[0]} with valid_from {key[1]} "
                f"(first at tariffs[{new[key][0]}])",
            )
            continue
        new[key] = (i, doc, version.service)
    if not new:
        return
    codes = sorted({k[0] for k in new})
    stored = {
        (code, vfrom.isoformat()): doc
        for code, vfrom, doc in conn.execute(
            "SELECT tariff_code, valid_from, document FROM tariff_versions"
            " WHERE tariff_code = ANY(%s)",
            (codes,),
        )
    }
    inserts = []
    for key, (i, doc, service) in new.items():
        old = stored.get(key)
        if old is None:
            inserts.append((key[0], key[1], service, Jsonb(doc)))
            report.count(SECTION, "created")
        elif old == doc:
            report.count(SECTION, "unchanged")
        else:
            report.reject(
                SECTION,
                i,
                key[0],
                f"tariff {key[0]} valid_from {key[1]} is already loaded with other "
                "content: catalog versions are immutable, publish a new valid_from",
            )
    if inserts:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO tariff_versions (tariff_code, valid_from, service, document)"
                " VALUES (%s, %s, %s, %s)",
                inserts,
            )
