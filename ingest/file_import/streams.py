"""Sections `readings` and `payments`: the same chains as live data, in chunks.

Reads go through `stream.pipeline.process_reads` (VEE, rating, sink; rejected reads land
in `rejected_reads`), payments through `billing.payments.record_payments`. Both run in
the import's transaction. An accepted record counts as created, a duplicate as unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import psycopg

from ingest.file_import.report import ImportReport
from rating.catalog import Catalog

CHUNK = 5000
_OUTCOME = {"accepted": "created", "duplicate": "unchanged"}


def _read_order(rec: Any) -> tuple[str, float]:
    """Sort key: meter, then time, so one meter's reads arrive in order across chunks."""
    if not isinstance(rec, Mapping):
        return ("", 0.0)
    meter, at = rec.get("meter_id"), rec.get("read_at")
    try:
        when = datetime.fromisoformat(at).timestamp() if isinstance(at, str) else 0.0
    except ValueError:
        when = 0.0
    return (str(meter), when)


def _read_key(rec: Any) -> str | None:
    if not isinstance(rec, Mapping):
        return None
    return f"{rec.get('meter_id')}/{rec.get('register')}@{rec.get('read_at')}"[:120]


def load_readings(
    conn: psycopg.Connection,
    records: Sequence[Any],
    report: ImportReport,
    *,
    now: int,
    channel: str,
    catalog: Catalog,
) -> None:
    from stream.pipeline import process_reads

    order = sorted(range(len(records)), key=lambda i: _read_order(records[i]))
    for start in range(0, len(order), CHUNK):
        idx = order[start : start + CHUNK]
        result = process_reads(
            conn, [records[i] for i in idx], channel=channel, now=now, catalog=catalog
        )
        for i, outcome in zip(idx, result.outcomes, strict=True):
            if outcome.status == "rejected":
                reason = outcome.reason or "rejected"
                meter = records[i].get("meter_id") if isinstance(records[i], Mapping) else None
                if reason.startswith("unknown meter") and isinstance(meter, str):
                    reason = report.parent_reason("meters", "meter_id", meter, "meter")
                report.reject("readings", i, _read_key(records[i]), reason)
            elif outcome.status == "quarantined":
                # kept, not billed: an operator releases it once the clock has caught up
                why = f"quarantined ({outcome.reason}); see GET /api/v1/ops/quarantine"
                report.reject("readings", i, _read_key(records[i]), why)
            else:
                report.count("readings", _OUTCOME[outcome.status])


def queue_readings(producer: Any, records: Sequence[Any], report: ImportReport) -> None:
    """Kafka path: reads that meet the contract go to the reads topic (counted as created,
    validated against the meter by the workers); the others are rejected here with reasons."""
    from schemas import SchemaError
    from schemas.meter_reads import decode_read

    order = sorted(range(len(records)), key=lambda i: _read_order(records[i]))
    good: list[Any] = []
    for i in order:
        try:
            decode_read(records[i])
        except SchemaError as exc:
            report.reject("readings", i, _read_key(records[i]), str(exc))
            continue
        good.append(records[i])
    for start in range(0, len(good), CHUNK):
        report.count(
            "readings", "created", producer.produce_read_objects(good[start : start + CHUNK])
        )


def load_payments(
    conn: psycopg.Connection, records: Sequence[Any], report: ImportReport, *, channel: str
) -> None:
    from billing.payments import record_payments

    for start in range(0, len(records), CHUNK):
        chunk = records[start : start + CHUNK]
        outcomes = record_payments(conn, chunk, channel=channel)
        for k, (rec, outcome) in enumerate(zip(chunk, outcomes, strict=True)):
            key = None
            if isinstance(rec, Mapping) and isinstance(rec.get("payment_id"), str):
                key = rec["payment_id"][:64]
            if outcome.status == "rejected":
                reason = outcome.reason or "rejected"
                cust = rec.get("customer_id") if isinstance(rec, Mapping) else None
                if isinstance(cust, str) and cust in report.rejected_keys["customers"]:
                    reason = report.parent_reason("customers", "customer_id", cust, "customer")
                report.reject("payments", start + k, key, reason)
            else:
                report.count("payments", _OUTCOME[outcome.status])
