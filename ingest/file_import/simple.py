"""Keyed upsert shared by the flat sections (customers, metering points).

Each record is parsed into a row tuple (natural key first); rows are compared with the
stored ones and counted as created, updated or unchanged; then written in one batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from ingest.file_import.fields import FieldError, key_of
from ingest.file_import.report import ImportReport

Row = tuple[Any, ...]


@dataclass(frozen=True)
class Table:
    section: str
    table: str
    columns: tuple[str, ...]  # the natural key first
    parse: Callable[[Any], Row]
    # (parsed row, stored row or None) -> row to store; may raise FieldError
    resolve: Callable[[Row, Row | None], Row] | None = None


def load_rows(
    conn: psycopg.Connection, spec: Table, records: Sequence[Any], report: ImportReport
) -> None:
    key_col = spec.columns[0]
    parsed: dict[str, tuple[int, Row]] = {}
    for i, rec in enumerate(records):
        try:
            row = spec.parse(rec)
        except FieldError as exc:
            report.reject(spec.section, i, key_of(rec, key_col), str(exc))
            continue
        first = parsed.get(row[0])
        if first is not None:
            report.reject(
                spec.section,
                i,
                row[0],
                f"{key_col}: duplicate {row[0]} (first at {spec.section}[{first[0]}])",
            )
            continue
        parsed[row[0]] = (i, row)
    if not parsed:
        return
    cols = sql.SQL(", ").join(map(sql.Identifier, spec.columns))
    query = sql.SQL("SELECT {} FROM {} WHERE {} = ANY(%s)").format(
        cols, sql.Identifier(spec.table), sql.Identifier(key_col)
    )
    stored = {r[0]: tuple(r) for r in conn.execute(query, (list(parsed),))}
    writes: list[Row] = []
    for key, (i, row) in parsed.items():
        old = stored.get(key)
        if spec.resolve is not None:
            try:
                row = spec.resolve(row, old)
            except FieldError as exc:
                report.reject(spec.section, i, key, str(exc))
                continue
        if old is None:
            report.count(spec.section, "created")
        elif old == row:
            report.count(spec.section, "unchanged")
            continue
        else:
            report.count(spec.section, "updated")
        writes.append(row)
    if writes:
        upsert = sql.SQL(
            "INSERT INTO {table} ({cols}) VALUES ({marks}) ON CONFLICT ({key}) DO UPDATE SET {sets}"
        ).format(
            table=sql.Identifier(spec.table),
            cols=cols,
            marks=sql.SQL(", ").join(sql.Placeholder() * len(spec.columns)),
            key=sql.Identifier(key_col),
            sets=sql.SQL(", ").join(
                sql.SQL("{c} = excluded.{c}").format(c=sql.Identifier(c)) for c in spec.columns[1:]
            ),
        )
        with conn.cursor() as cur:
            cur.executemany(upsert, writes)
