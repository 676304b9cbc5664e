"""Late-payment interest (zatezna kamata) charged on the next monthly invoice.

A line source of the close (`interest_lines`) adds one line "Zatezna kamata" per customer:
the interest accrued on their overdue principal up to the last day of the period closed
(`billing.interest`, the collections ladder's rates) less all interest charged before —
on earlier invoices (`interest_charges`, unless that invoice was credited) and by
collections letters (`customer_charges` of kind interest). Because the charge is the
difference of two totals, no interest is charged twice, and interest that a late-dated
payment or a reversal changes is caught up on the next invoice. The principal is each
invoice's total less its own interest line (simple interest: none on interest); credits
are the customer's payments (reversals and refunds are negative) and write-offs.

The line is VAT-exempt (rate 0: interest is not a supply) and is booked to the interest
revenue account (service ``interest``). `record_interest_after_close` records what each
written invoice charged and up to which day. The policy (`interest_policy`, migration
0016) switches it off or sets a minimum below which interest waits for a later invoice.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

import psycopg

from billing import BillingError
from billing.calculation import InvoiceLine
from billing.close_hooks import CloseContext, ExtraLines, WrittenInvoice
from billing.collections import load_ladder
from billing.interest import Credit, Debt, RatePeriod, total_interest_fen
from billing.ledger import INTEREST_SERVICE

COMPONENT = "late_interest"
_CHUNK = 5000


@dataclass(frozen=True, slots=True)
class InterestPolicy:
    on_invoice: bool = True
    min_charge_fen: int = 0


def load_policy(conn: psycopg.Connection) -> InterestPolicy:
    row = conn.execute("SELECT on_invoice, min_charge_fen FROM interest_policy").fetchone()
    return InterestPolicy() if row is None else InterestPolicy(bool(row[0]), int(row[1]))


def set_policy(conn: psycopg.Connection, *, on_invoice: bool, min_charge_fen: int = 0) -> None:
    if isinstance(min_charge_fen, bool) or not isinstance(min_charge_fen, int) or (
            min_charge_fen < 0):
        raise BillingError(f"min_charge_fen: a whole number ≥ 0, got {min_charge_fen!r}")
    conn.execute(
        """INSERT INTO interest_policy (singleton, on_invoice, min_charge_fen)
           VALUES (true, %s, %s) ON CONFLICT (singleton) DO UPDATE
           SET on_invoice = excluded.on_invoice, min_charge_fen = excluded.min_charge_fen""",
        (bool(on_invoice), min_charge_fen))


def interest_line(amount_fen: int, through: date) -> InvoiceLine:
    return InvoiceLine(INTEREST_SERVICE, "", COMPONENT, None,
                       f"Zatezna kamata do {through.strftime('%d.%m.%Y')}", 1000, "KM",
                       amount_fen * 10_000, amount_fen, Decimal(0))


def interest_due(conn: psycopg.Connection, customer_ids: Sequence[str], through: date,
                 rates: Sequence[RatePeriod]) -> dict[str, tuple[int, int]]:
    """customer → (interest accrued up to `through`, interest charged so far), for the
    customers with an invoice past due by `through`."""
    out: dict[str, tuple[int, int]] = {}
    ids = sorted(set(customer_ids))
    for i in range(0, len(ids), _CHUNK):
        out.update(_due_chunk(conn, ids[i:i + _CHUNK], through, rates))
    return out


def _due_chunk(conn: psycopg.Connection, ids: list[str], through: date,
               rates: Sequence[RatePeriod]) -> dict[str, tuple[int, int]]:
    args = {"ids": ids, "d": through}
    debts: dict[str, list[Debt]] = defaultdict(list)
    for cid, number, due_on, principal in conn.execute(
        """SELECT i.customer_id, i.invoice_number, i.due_on,
                  i.total_fen - coalesce((SELECT sum(l.amount_fen) FROM invoice_lines l
                                          WHERE l.invoice_number = i.invoice_number
                                            AND l.service = 'interest'), 0)
           FROM invoices i
           WHERE i.customer_id = ANY(%(ids)s) AND i.issued_on <= %(d)s
             AND NOT EXISTS (SELECT 1 FROM credit_notes n WHERE n.invoice_number = i.invoice_number
                             AND n.issued_on <= %(d)s)
             AND EXISTS (SELECT 1 FROM invoices o WHERE o.customer_id = i.customer_id
                         AND o.due_on < %(d)s)
           ORDER BY i.customer_id, i.period, i.issued_on, i.invoice_number""", args):
        debts[cid].append(Debt(number, due_on, int(principal)))
    if not debts:
        return {}
    args["ids"] = sorted(debts)
    credits: dict[str, list[Credit]] = defaultdict(list)
    for cid, on, amount in conn.execute(
        """SELECT customer_id, paid_on, amount_fen FROM payments
           WHERE customer_id = ANY(%(ids)s) AND paid_on <= %(d)s
           UNION ALL
           SELECT customer_id, charged_on, -amount_fen FROM customer_charges
           WHERE customer_id = ANY(%(ids)s) AND kind = 'write_off' AND charged_on <= %(d)s""",
            args):
        credits[cid].append(Credit(on, int(amount)))
    charged: dict[str, int] = defaultdict(int)
    for cid, amount in conn.execute(
        """SELECT customer_id, sum(amount_fen)::bigint FROM (
               SELECT customer_id, amount_fen FROM customer_charges
               WHERE customer_id = ANY(%(ids)s) AND kind = 'interest'
               UNION ALL
               SELECT c.customer_id, c.amount_fen FROM interest_charges c
               WHERE c.customer_id = ANY(%(ids)s)
                 AND NOT EXISTS (SELECT 1 FROM credit_notes n
                                 WHERE n.invoice_number = c.invoice_number)) AS t
           GROUP BY customer_id""", args):
        charged[cid] = int(amount)
    return {cid: (total_interest_fen(ds, credits[cid], through, rates), charged[cid])
            for cid, ds in debts.items()}


def interest_lines(ctx: CloseContext, customer_ids: Sequence[str]) -> ExtraLines:
    """Line source of the close: the interest not yet charged, per customer."""
    policy = load_policy(ctx.conn)
    if not policy.on_invoice or not customer_ids:
        return ExtraLines()
    through = ctx.end - timedelta(days=1)
    try:
        rates = load_ladder().rates
    except BillingError as exc:
        return ExtraLines(skipped={c: f"interest rates: {exc}" for c in customer_ids})
    lines = {}
    for cid, (accrued, charged) in interest_due(ctx.conn, customer_ids, through, rates).items():
        amount = accrued - charged
        if amount > 0 and amount >= policy.min_charge_fen:
            lines[cid] = [interest_line(amount, through)]
    return ExtraLines(lines=lines)


def record_interest_after_close(ctx: CloseContext, written: Sequence[WrittenInvoice]) -> None:
    """After-write step of the close: record the interest each new invoice charged."""
    numbers = [w.invoice_number for w in written]
    if numbers:
        ctx.conn.execute(
            """INSERT INTO interest_charges (invoice_number, customer_id, through_day,
                   amount_fen)
               SELECT i.invoice_number, i.customer_id, %s, sum(l.amount_fen)
               FROM invoices i JOIN invoice_lines l USING (invoice_number)
               WHERE i.invoice_number = ANY(%s) AND l.service = 'interest'
               GROUP BY i.invoice_number, i.customer_id HAVING sum(l.amount_fen) > 0""",
            (ctx.end - timedelta(days=1), numbers))
