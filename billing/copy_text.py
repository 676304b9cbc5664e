"""Rows in PostgreSQL COPY text format, formatted in bulk.

The close and the ledger write hundreds of thousands of rows; formatting them as
tab-separated text and writing large pieces costs a fraction of psycopg's `write_row` per
row. Fields are escaped as COPY's text format requires; None is NULL (``\\N``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psycopg

_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_BATCH = 20_000  # rows per write


def copy_field(value: object) -> str:
    """One field of COPY's text format: NULL as \\N, backslash and separators escaped."""
    if value is None:
        return "\\N"
    text = str(value)
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        return text.translate(_ESCAPES)
    return text


def copy_rows(cur: psycopg.Cursor[Any], statement: str, rows: Iterable[str]) -> None:
    """COPY of rows already formatted (tab-separated fields), written in large pieces."""
    with cur.copy(statement) as copy:
        batch: list[str] = []
        for row in rows:
            batch.append(row)
            if len(batch) >= _BATCH:
                copy.write("\n".join(batch) + "\n")
                batch.clear()
        if batch:
            copy.write("\n".join(batch) + "\n")
