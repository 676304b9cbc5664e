"""A viewable draft of the monthly close: what `billing.closer.close_period` would invoice,
computed with the closer's own queries and calculation, without writing and without
numbers. Runs in a savepoint that is always rolled back, so nothing a line source might do
survives; it takes no lock, so a close running meanwhile is not held up (the preview is
then a snapshot of the data before that close commits).

Besides each draft (lines, VAT, totals) the preview shows the customer credit the close
would apply to it (`billing.customer_credit`) and the amount left to pay, and the
customers the close would skip, with the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

import psycopg

from billing import BillingError, closer
from billing.calculation import InvoiceDraft
from billing.close_hooks import CloseContext, LineSource
from billing.customer_credit import balances
from rating import RatingError
from rating.calendar import month_bounds
from stream.pipeline import load_catalog


@dataclass(frozen=True)
class DraftPreview:
    draft: InvoiceDraft
    credit_applied_fen: int  # customer credit the close would apply
    to_pay_fen: int


@dataclass(frozen=True)
class ClosePreview:
    period: str
    issued_on: date
    due_on: date
    invoices: list[DraftPreview]
    invoices_existing: int  # invoices the period already has (the close skips them)
    skipped: dict[str, str] = field(default_factory=dict)  # customer_id → why
    net_fen: int = 0
    vat_fen: int = 0
    total_fen: int = 0


def preview_close(conn: psycopg.Connection, period: str, *, issued_on: date,
                  line_sources: Sequence[LineSource] | None = None) -> list[InvoiceDraft]:
    """The drafts `close_period(conn, period, issued_on=issued_on)` would write now."""
    return [p.draft for p in preview_close_report(conn, period, issued_on=issued_on,
                                                  line_sources=line_sources).invoices]


def preview_close_report(
    conn: psycopg.Connection, period: str, *, issued_on: date, payment_days: int = 15,
    line_sources: Sequence[LineSource] | None = None,
) -> ClosePreview:
    """The close's drafts with credit applied and amount to pay, and the skipped
    customers. Raises `BillingError` where `close_period` would."""
    if not isinstance(period, str) or not closer._PERIOD.match(period):
        raise BillingError(f"period: must be YYYY-MM, got {period!r}")
    first, end = month_bounds(period)
    if issued_on < end:
        raise BillingError(f"period {period} has not ended: it ends on"
                           f" {end - timedelta(days=1)}, issued_on {issued_on} must be later")
    if not 0 <= payment_days <= 365:
        raise BillingError(f"payment_days: must be 0–365, got {payment_days}")
    with conn.transaction(force_rollback=True):
        existing = closer._scalar(conn, "SELECT count(*) FROM invoices WHERE period = %s"
                                        " AND kind = 'invoice'", (period,))
        try:
            catalog = closer._CachedCatalog(load_catalog(conn))
        except RatingError as exc:
            raise BillingError(f"tariff catalog: {exc}") from exc
        ctx = CloseContext(conn, period, first, end, issued_on, catalog)
        drafts, skipped = closer.draft_invoices(ctx, line_sources)
        held = balances(conn, [d.customer_id for d in drafts])
    out = []
    for d in drafts:
        balance, _ = held.get(d.customer_id, (0, 0))
        credit = min(max(0, -balance), d.total_fen) if d.total_fen > 0 else 0
        out.append(DraftPreview(d, credit, d.total_fen - credit))
    return ClosePreview(
        period, issued_on, issued_on + timedelta(days=payment_days), out, existing,
        dict(sorted(skipped.items())), sum(d.net_fen for d in drafts),
        sum(d.vat_fen for d in drafts), sum(d.total_fen for d in drafts))
