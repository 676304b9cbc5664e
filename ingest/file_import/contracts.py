"""Section `contracts`: who is billed for which service at which metering point, by which
tariff, from when to when (valid_to inclusive).

Contracts of one metering point and service may not overlap. A contract already invoiced
or rated may only get a new valid_to, and not one before what was invoiced or rated.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

import psycopg

from ingest.file_import.fields import (
    FieldError,
    as_record,
    choice,
    day,
    ident,
    key_of,
    text,
)
from ingest.file_import.parties import customer_id
from ingest.file_import.report import ImportReport
from rating import RatingError
from rating.calendar import month_bounds
from rating.catalog import Catalog

SECTION = "contracts"
SERVICES = ("electricity", "water", "waste")
FIELDS = frozenset(
    {
        "contract_id",
        "customer_id",
        "metering_point_id",
        "service",
        "tariff_code",
        "valid_from",
        "valid_to",
    }
)
COLUMNS = (
    "contract_id",
    "customer_id",
    "metering_point_id",
    "service",
    "tariff_code",
    "valid_from",
    "valid_to",
)
_END = date(9999, 12, 31)

Row = tuple[str, str, str, str, str, date, date | None]


def parse_contract(obj: Any) -> Row:
    rec = as_record(obj, FIELDS)
    cid = ident(rec, "contract_id")
    cust = customer_id(rec.get("customer_id"))
    mp = ident(rec, "metering_point_id")
    service = choice(rec, "service", SERVICES)
    tariff = text(rec, "tariff_code", max_len=64)
    first = day(rec, "valid_from")
    last = day(rec, "valid_to", required=False)
    assert tariff is not None and first is not None
    if last is not None and last < first:
        raise FieldError("valid_to: must not be before valid_from (valid_to is inclusive)")
    return (cid, cust, mp, service, tariff, first, last)


def load_contracts(
    conn: psycopg.Connection, records: Sequence[Any], report: ImportReport, catalog: Catalog
) -> None:
    parsed: dict[str, tuple[int, Row]] = {}
    for i, rec in enumerate(records):
        try:
            row = parse_contract(rec)
            _check_tariff(row, catalog, report)
        except FieldError as exc:
            report.reject(SECTION, i, key_of(rec, "contract_id"), str(exc))
            continue
        if row[0] in parsed:
            report.reject(
                SECTION,
                i,
                row[0],
                f"contract_id: duplicate {row[0]} (first at contracts[{parsed[row[0]][0]}])",
            )
            continue
        parsed[row[0]] = (i, row)
    if not parsed:
        return
    rows = [r for _, r in parsed.values()]
    customers = {
        r[0]
        for r in conn.execute(
            "SELECT customer_id FROM customers WHERE customer_id = ANY(%s)",
            (sorted({r[1] for r in rows}),),
        )
    }
    areas: dict[str, Any] = dict(
        conn.execute(
            "SELECT metering_point_id, area_m2 FROM metering_points"
            " WHERE metering_point_id = ANY(%s)",
            (sorted({r[2] for r in rows}),),
        ).fetchall()
    )
    stored: dict[str, Any] = {
        r[0]: tuple(r)
        for r in conn.execute(
            f"SELECT {', '.join(COLUMNS)} FROM contracts WHERE contract_id = ANY(%s)",
            (list(parsed),),
        )
    }
    spans: dict[tuple[str, str], dict[str, tuple[date, date]]] = {}
    for cid, mp, service, first, last in conn.execute(
        "SELECT contract_id, metering_point_id, service, valid_from, valid_to FROM contracts"
        " WHERE metering_point_id = ANY(%s)",
        (list(areas),),
    ):
        spans.setdefault((mp, service), {})[cid] = (first, last or _END)

    writes: list[Row] = []
    for cid, (i, row) in parsed.items():
        old = stored.get(cid)
        try:
            _check_parents(row, customers, areas, catalog, report)
            _check_overlap(row, spans)
            if old is not None and old != row:
                _check_in_use(conn, old, row)
        except FieldError as exc:
            report.reject(SECTION, i, cid, str(exc))
            continue
        spans.setdefault((row[2], row[3]), {})[cid] = (row[5], row[6] or _END)
        if old is not None and (old[2], old[3]) != (row[2], row[3]):
            spans.get((old[2], old[3]), {}).pop(cid, None)
        if old is None:
            report.count(SECTION, "created")
        elif old == row:
            report.count(SECTION, "unchanged")
            continue
        else:
            report.count(SECTION, "updated")
        writes.append(row)
    if writes:
        sets = ", ".join(f"{c} = excluded.{c}" for c in COLUMNS[1:])
        with conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO contracts ({', '.join(COLUMNS)}) VALUES (%s, %s, %s, %s, %s, %s, %s)"
                f" ON CONFLICT (contract_id) DO UPDATE SET {sets}",
                writes,
            )


def _check_tariff(row: Row, catalog: Catalog, report: ImportReport) -> None:
    tariff, service, first = row[4], row[3], row[5]
    if tariff not in catalog.versions:
        raise FieldError(report.parent_reason("tariffs", "tariff_code", tariff, "tariff"))
    try:
        version = catalog.version_on(tariff, first)
    except RatingError as exc:
        raise FieldError(f"tariff_code: {exc}") from exc
    if version.service != service:
        raise FieldError(
            f"tariff_code: {tariff} is a {version.service} tariff, the contract is for {service}"
        )


def _check_parents(
    row: Row, customers: set[str], areas: dict[str, Any], catalog: Catalog, report: ImportReport
) -> None:
    if row[1] not in customers:
        raise FieldError(report.parent_reason("customers", "customer_id", row[1], "customer"))
    if row[2] not in areas:
        raise FieldError(
            report.parent_reason("metering_points", "metering_point_id", row[2], "metering point")
        )
    version = catalog.version_on(row[4], row[5])
    if version.components_of_kind("per_m2_month") and areas[row[2]] is None:
        raise FieldError(
            f"tariff_code: {row[4]} is charged per m², metering point {row[2]} has no area_m2"
        )


def _check_overlap(row: Row, spans: dict[tuple[str, str], dict[str, tuple[date, date]]]) -> None:
    first, last = row[5], row[6] or _END
    for other, (o_first, o_last) in sorted(spans.get((row[2], row[3]), {}).items()):
        if other != row[0] and first <= o_last and o_first <= last:
            raise FieldError(
                f"valid_from: overlaps contract {other} ({o_first} – "
                f"{'open' if o_last == _END else o_last}) for {row[3]} at "
                f"metering point {row[2]}"
            )


def _check_in_use(conn: psycopg.Connection, old: Row, new: Row) -> None:
    """A contract already invoiced or rated may only change its valid_to."""
    invoiced = conn.execute(
        "SELECT max(i.period) FROM invoices i JOIN invoice_lines l USING (invoice_number)"
        " WHERE i.customer_id = %s AND l.metering_point_id = %s AND l.service = %s",
        (old[1], old[2], old[3]),
    ).fetchone()
    rated = conn.execute(
        "SELECT max(local_day) FROM consumption_intervals WHERE metering_point_id = %s"
        " AND service = %s AND tariff_code = %s AND local_day BETWEEN %s AND %s",
        (old[2], old[3], old[4], old[5], old[6] or _END),
    ).fetchone()
    last_used: date | None = rated[0] if rated else None
    if invoiced and invoiced[0]:
        period_end = month_bounds(invoiced[0])[1] - timedelta(days=1)
        last_used = max(last_used or period_end, period_end)
    if last_used is None:
        return
    changed = [c for c, a, b in zip(COLUMNS, old, new, strict=True) if a != b]
    if changed != ["valid_to"]:
        raise FieldError(
            f"contract {old[0]} is already invoiced or rated (through "
            f"{last_used}): only valid_to may change, not "
            f"{', '.join(c for c in changed if c != 'valid_to')}"
        )
    if new[6] is not None and new[6] < last_used:
        raise FieldError(
            f"valid_to: cannot end before {last_used}, already invoiced or rated "
            "under this contract"
        )
