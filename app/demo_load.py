"""Load the demo utility on first start: generate, import through the real chain, close
every month, record the customers' payments."""

from __future__ import annotations

import time
from typing import Any

import psycopg

from app.bootstrap import Runtime
from app.clock import now_utc, today_local
from app.demo_data import demo_periods, generate_demo
from app.demo_payments import IssuedInvoice, demo_payments
from billing.closer import close_period
from billing.payments import record_payments
from ingest.file_import import import_document
from rating.calendar import month_bounds, previous_period


def load_demo(rt: Runtime, *, customers: int, months: int, end_period: str | None) -> None:
    """Generate demo data, import it through the real chain, close every month, and record
    the customers' payments (most on time, some late, a few debtors)."""
    today = today_local()
    end = end_period or previous_period(f"{today.year:04d}-{today.month:02d}")
    started = time.perf_counter()
    doc = generate_demo(customers=customers, months=months, end_period=end)
    with rt.pool.connection() as conn:
        report = import_document(conn, doc, now=int(now_utc().timestamp()), channel="demo")
        print(report.summary())
        # month by month, as it happened: the payments made before an invoice is issued
        # are recorded before its close, so only real late payers are charged interest
        last_issue = month_bounds(end)[1]
        pending: list[dict[str, Any]] = []
        recorded = offered = 0
        for i, period in enumerate(demo_periods(end, months)):
            issued = month_bounds(period)[1]
            recorded += _record(conn, [p for p in pending if p["paid_on"] < issued.isoformat()])
            pending = [p for p in pending if p["paid_on"] >= issued.isoformat()]
            res = close_period(conn, period, issued_on=issued, payment_days=15)
            print(f"closed {period}: {res.invoices_created} invoices", flush=True)
            invoices = [
                IssuedInvoice(*row)
                for row in conn.execute(
                    "SELECT invoice_number, customer_id, issued_on, due_on, total_fen,"
                    " payment_reference FROM invoices WHERE period = %s AND kind = 'invoice'",
                    (period,),
                )
            ]
            made = demo_payments(invoices, today=today, seed=5 + i, last_issue=last_issue)
            offered += len(made)
            pending.extend(made)
        recorded += _record(conn, pending)
        print(f"payments recorded: {recorded} of {offered}")
    print(f"demo data ready in {time.perf_counter() - started:.1f} s")


def _record(conn: psycopg.Connection, payments: list[dict[str, Any]]) -> int:
    if not payments:
        return 0
    with conn.transaction():
        outcomes = record_payments(conn, payments, channel="demo")
    return sum(o.status == "accepted" for o in outcomes)
