"""Aging of receivables (starosna struktura potraživanja) as of a date.

A customer's open items are their invoices (due on ``due_on``, FIFO order of
`billing.accounts`) followed by their charges (interest, fees, court costs; due on the day
charged). Credits are payments and write-offs. A payment whose reference names one of the
invoices pays that invoice; everything else covers invoices oldest first, then charges
oldest first (`billing.allocation`); each item's open part is aged by the days it is past due:
``not_due`` (due as_of or later), 0–30, 31–60, 61–90, 91–180, 181–365, over 365.
Everything is as known at the end of `as_of` (later documents are ignored).

The total of the buckets is the open receivables; a customer who paid more than they owe
has no open item and shows the surplus as ``credit_fen``. Buckets minus credits therefore
equal the receivables account of the ledger when every document is booked.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

import psycopg

from billing.allocation import Credit, Debt, cover

BUCKETS = ("not_due", "0-30", "31-60", "61-90", "91-180", "181-365", "over_365")
_LIMITS = ((0, "not_due"), (30, "0-30"), (60, "31-60"), (90, "61-90"), (180, "91-180"),
           (365, "181-365"))


@dataclass
class CustomerItems:
    invoices: list[Debt] = field(default_factory=list)
    charges: list[Debt] = field(default_factory=list)
    interest_charged_fen: int = 0
    credits: list[Credit] = field(default_factory=list)


@dataclass(frozen=True)
class AgingRow:
    customer_id: str
    name: str
    buckets: dict[str, int]
    total_fen: int
    credit_fen: int


@dataclass(frozen=True)
class AgingReport:
    as_of: date
    rows: list[AgingRow]
    totals: dict[str, int]
    total_fen: int
    credit_fen: int


# The invoice a payment row targets (`billing.allocation`): the customer's own invoice its
# reference names, for a reversal the one the reversed payment named; NULL for a refund.
# The reference is stored as the bank wrote it: spaces and dashes are dropped to compare.
# Use with ``FROM payments p {PAYMENT_TARGET_JOIN}``; ``{PAYMENT_TARGET}`` is the column.
PAYMENT_TARGET_JOIN = """
    LEFT JOIN payments o ON p.kind = 'reversal' AND o.payment_id = p.reverses
                        AND o.kind = 'payment'
    LEFT JOIN invoices t ON t.customer_id = p.customer_id
                        AND t.payment_reference = translate(
                            CASE p.kind WHEN 'payment' THEN p.reference
                                        WHEN 'reversal' THEN o.reference END, ' -', '')
"""
PAYMENT_TARGET = "t.invoice_number"


def bucket_of(days_past_due: int) -> str:
    for limit, name in _LIMITS:
        if days_past_due <= limit:
            return name
    return "over_365"


def age_items(items: Sequence[Debt], credits: Sequence[Credit], as_of: date
              ) -> tuple[dict[str, int], int]:
    """(open amount per bucket, unused credit) for one customer; pure."""
    coverage = cover(items, credits, as_of)
    buckets = dict.fromkeys(BUCKETS, 0)
    for item, covered in zip(items, coverage.covered_fen, strict=True):
        amount = max(item.total_fen, 0)
        if amount > covered:
            buckets[bucket_of((as_of - item.due_on).days)] += amount - covered
    return buckets, coverage.surplus_fen


def load_items(conn: psycopg.Connection, as_of: date, customer_id: str | None = None
               ) -> dict[str, CustomerItems]:
    """Invoices issued, charges made and credits received up to `as_of`, per customer."""
    who = "" if customer_id is None else " AND customer_id = %(c)s"
    args = {"d": as_of, "c": customer_id}
    out: dict[str, CustomerItems] = defaultdict(CustomerItems)
    for cid, number, due_on, total in conn.execute(
        f"""SELECT customer_id, invoice_number, due_on, total_fen FROM invoices
            WHERE issued_on <= %(d)s{who}
              AND NOT EXISTS (SELECT 1 FROM credit_notes n  -- a credited invoice is no debt
                              WHERE n.invoice_number = invoices.invoice_number
                                AND n.issued_on <= %(d)s)
            ORDER BY customer_id, period, issued_on, invoice_number""", args):
        out[cid].invoices.append(Debt(number, due_on, int(total)))
    for cid, charge_id, kind, on, amount in conn.execute(
        f"""SELECT customer_id, charge_id, kind, charged_on, amount_fen FROM customer_charges
            WHERE charged_on <= %(d)s{who} ORDER BY customer_id, charged_on, charge_id""", args):
        if amount > 0:
            out[cid].charges.append(Debt(charge_id, on, int(amount)))
            if kind == "interest":
                out[cid].interest_charged_fen += int(amount)
        else:
            out[cid].credits.append(Credit(on, -int(amount)))
    for cid, on, amount, target in conn.execute(
        f"""SELECT p.customer_id, p.paid_on, p.amount_fen, {PAYMENT_TARGET}
            FROM payments p {PAYMENT_TARGET_JOIN}
            WHERE p.paid_on <= %(d)s{"" if customer_id is None else " AND p.customer_id = %(c)s"}
            ORDER BY p.customer_id, p.paid_on, p.payment_id""", args):
        out[cid].credits.append(Credit(on, int(amount), target))
    return dict(out)


def aging_report(conn: psycopg.Connection, as_of: date, customer_id: str | None = None
                 ) -> AgingReport:
    """Per customer with an open item or a credit, and totals."""
    names: dict[str, str] = dict(conn.execute("SELECT customer_id, name FROM customers").fetchall())
    rows = []
    totals = dict.fromkeys(BUCKETS, 0)
    for cid, items in sorted(load_items(conn, as_of, customer_id).items()):
        buckets, credit = age_items([*items.invoices, *items.charges], items.credits, as_of)
        total = sum(buckets.values())
        if total == 0 and credit == 0:
            continue
        rows.append(AgingRow(cid, str(names.get(cid, "")), buckets, total, credit))
        for name, amount in buckets.items():
            totals[name] += amount
    return AgingReport(as_of, rows, totals, sum(totals.values()),
                       sum(r.credit_fen for r in rows))
