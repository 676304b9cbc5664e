"""Tariff corrections of closed periods (ispravka cijene).

A price was wrong for a while and invoices were made with it. History is not rewritten:
the original ``tariff_versions`` row stays (the finalized invoices agree with it), and the
operator records a *correction* — a full tariff document valid for [valid_from, valid_to]
— with a reason. Re-rating any period in that range uses `corrected_catalog`: the
original catalog with the corrections laid over it in the order they were recorded (the
version in force after the range comes back the day after it). Recording queues every
(metering point, service, period) already invoiced under that tariff in the range; the
next close of each customer bills the differences as "Ispravka cijene …" lines
(`billing.adjustments`). Periods not invoiced yet are billed by the close with the
catalog itself: for those, record a new tariff version instead.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Any

import psycopg

from billing import BillingError
from rating import RatingError
from rating.catalog import Catalog, TariffVersion, parse_tariff
from stream.pipeline import load_catalog


@dataclass(frozen=True)
class TariffCorrection:
    correction_id: int
    version: TariffVersion  # valid_from = the first corrected day
    valid_to: date  # the last corrected day
    reason: str

    def overlaps(self, first: date, end: date) -> bool:
        return self.version.valid_from < end and self.valid_to >= first


def corrected_catalog(base: Catalog, corrections: Sequence[TariffCorrection]) -> Catalog:
    """`base` with every correction in force over its range (later ones win)."""
    versions = dict(base.versions)
    for corr in sorted(corrections, key=lambda c: c.correction_id):
        code = corr.version.tariff_code
        current = versions.get(code, [])
        after = corr.valid_to + timedelta(days=1)
        kept_before = [v for v in current if v.valid_from < corr.version.valid_from]
        kept_after = [v for v in current if v.valid_from >= after]
        resume = [v for v in current if v.valid_from < after]
        lst = [*kept_before, corr.version]
        if resume and not any(v.valid_from == after for v in kept_after):
            lst.append(replace(resume[-1], valid_from=after))
        versions[code] = [*lst, *kept_after]
    return Catalog(versions)


def corrections_for(corrections: Iterable[TariffCorrection], tariff_codes: Iterable[str],
                    first: date, end: date) -> list[TariffCorrection]:
    codes = set(tariff_codes)
    return [c for c in corrections
            if c.version.tariff_code in codes and c.overlaps(first, end)]


def load_corrections(conn: psycopg.Connection) -> list[TariffCorrection]:
    out = []
    for cid, valid_to, doc, reason in conn.execute(
            "SELECT correction_id, valid_to, document, reason FROM tariff_corrections"
            " ORDER BY correction_id"):
        out.append(TariffCorrection(int(cid), parse_tariff(doc), valid_to, reason))
    return out


def _text(value: object, field: str, limit: int) -> str:
    if not isinstance(value, str) or not 1 <= len(value.strip()) <= limit:
        raise BillingError(f"{field}: 1–{limit} characters required")
    return value.strip()


def record_correction(
    conn: psycopg.Connection, *, tariff_code: str, valid_from: date, valid_to: date,
    document: Mapping[str, Any], reason: str, operator: str,
) -> tuple[int, int]:
    """Record a corrected version of `tariff_code` for [valid_from, valid_to] and queue the
    invoiced periods it changes; return (correction id, queued periods). `document` is a
    tariff document (its tariff_code and valid_from are taken from the arguments). Raises
    `BillingError` naming the field. Commits nothing."""
    why = _text(reason, "reason", 500)
    who = _text(operator, "operator", 100)
    if not isinstance(valid_from, date) or not isinstance(valid_to, date):
        raise BillingError("valid_from, valid_to: dates are required")
    if valid_to < valid_from:
        raise BillingError(f"valid_to: {valid_to} is before valid_from {valid_from}")
    if not isinstance(document, Mapping):
        raise BillingError("document: a tariff document (JSON object) is required")
    doc = {**document, "tariff_code": tariff_code, "valid_from": valid_from.isoformat()}
    try:
        original = load_catalog(conn).version_on(tariff_code, valid_from)
    except RatingError as exc:
        raise BillingError(f"tariff_code: {exc}") from exc
    try:
        version = parse_tariff(doc)
    except RatingError as exc:
        raise BillingError(f"document.{exc}") from exc
    if version.service != original.service:
        raise BillingError(f"document.service: {tariff_code} is a {original.service} tariff,"
                           f" got {version.service}")
    with conn.transaction():
        row = conn.execute(
            "INSERT INTO tariff_corrections (tariff_code, valid_from, valid_to, document,"
            " reason, operator) VALUES (%s, %s, %s, %s, %s, %s) RETURNING correction_id",
            (tariff_code, valid_from, valid_to, json.dumps(doc), why, who)).fetchone()
        assert row is not None
        queued = conn.execute(
            """INSERT INTO rebill_queue (metering_point_id, service, period, cause)
               SELECT DISTINCT c.metering_point_id, c.service, i.period, 'tariff'
               FROM contracts c
               JOIN invoices i ON i.customer_id = c.customer_id AND i.kind = 'invoice'
               WHERE c.tariff_code = %(code)s
                 AND i.period BETWEEN to_char(%(first)s::date, 'YYYY-MM')
                                  AND to_char(%(last)s::date, 'YYYY-MM')
                 AND greatest(c.valid_from, to_date(i.period, 'YYYY-MM'), %(first)s::date)
                     <= least(c.valid_to, (to_date(i.period, 'YYYY-MM')
                                           + INTERVAL '1 month - 1 day')::date,
                              %(last)s::date)
               ON CONFLICT (metering_point_id, service, period)
               DO UPDATE SET cause = 'tariff'""",
            {"code": tariff_code, "first": valid_from, "last": valid_to}).rowcount
    return int(row[0]), int(queued)
