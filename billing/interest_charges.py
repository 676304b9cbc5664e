"""Late-payment interest (zatezna kamata) charged on the next monthly invoice.

A line source of the close (`interest_lines`) adds one line "Zatezna kamata" per customer:
the interest accrued on their overdue principal up to the last day of the period closed
(`billing.interest`, the collections ladder's rates) less all interest charged before —
on earlier invoices (`interest_charges`, unless that invoice was credited) and by
collections letters (`customer_charges` of kind interest). Because the charge is the
difference of two totals, no interest is charged twice, and interest that a late-dated
payment or a reversal changes is caught up on the next invoice. The principal is each
invoice's total less the interest it charged (simple interest: none on interest); credits
are the customer's payments (reversals and refunds are negative) and write-offs.

The line is VAT-exempt (rate 0: interest is not a supply) and is booked to the interest
revenue account (service ``interest``). `record_interest_after_close` records what each
written invoice charged and up to which day. The policy (`interest_policy`, migration
0016) switches it off or sets a minimum below which interest waits for a later invoice.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from itertools import accumulate

import psycopg

from billing import BillingError
from billing.aging import PAYMENT_TARGET, PAYMENT_TARGET_JOIN
from billing.allocation import targets
from billing.calculation import InvoiceLine
from billing.close_hooks import (
    CloseContext,
    ExtraLines,
    WrittenInvoice,
    number_range,
    per_chunk,
)
from billing.collections import load_ladder
from billing.interest import Credit, Debt, RatePeriod, check_rates, total_interest_fen
from billing.ledger import INTEREST_SERVICE
from rating.money import round_half_up_div

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


_SCALE = 10**8  # daily rates are exact to 8 decimals of a percent


def accrued_fen(debts: Sequence[Debt], credits: Sequence[Credit], as_of: date,
                rates: Sequence[RatePeriod]) -> int:
    """`billing.interest.total_interest_fen` in integer arithmetic, several times faster
    (a close computes it for every customer with an overdue invoice): the same day count,
    FIFO principal and per-invoice rounding; falls back to it for a rate finer than 1e-8 %
    and for a customer whose payment names an invoice (`billing.allocation`)."""
    scaled = [r.daily_percent * _SCALE for r in rates]
    if not rates or any(x != int(x) for x in scaled) or targets(debts, credits):
        return total_interest_fen(debts, credits, as_of, rates)
    check_rates(rates)
    starts, rate_ints = [r.valid_from for r in rates], [int(x) for x in scaled]
    one = timedelta(days=1)
    end = as_of + one
    per_day: dict[date, int] = defaultdict(int)
    for c in credits:
        if c.on <= as_of:
            per_day[c.on + one] += c.amount_fen  # a credit counts from the next day on
    credit_days = sorted(per_day)
    cumulative = list(accumulate(per_day[d] for d in credit_days))

    def paid_at(day: date) -> int:
        i = bisect_right(credit_days, day)
        return cumulative[i - 1] if i else 0

    def rate_at(day: date) -> int:
        i = bisect_right(starts, day) - 1
        if i < 0:
            raise BillingError(f"rates: no interest rate is valid on {day.isoformat()}")
        return rate_ints[i]

    points = sorted({*credit_days, *(s for s in starts if s < end), end})
    paid_pt = [paid_at(p) for p in points]
    rate_pt = [rate_at(p) if p < end else 0 for p in points]
    low_from = list(accumulate(reversed(paid_pt), min))[::-1]  # least paid from point j on
    total, before = 0, 0
    for debt in debts:
        principal = max(debt.total_fen, 0)
        start = debt.due_on + one
        if start < end and principal > 0:
            j = bisect_right(points, start)
            a, paid, rate, exact = start, paid_at(start), rate_at(start), 0
            while True:
                b = points[j]
                open_fen = principal - min(max(paid - before, 0), principal)
                exact += open_fen * rate * (b - a).days
                if b == end or low_from[j] - before >= principal:  # covered from here on
                    break
                a, paid, rate, j = b, paid_pt[j], rate_pt[j], j + 1
            total += round_half_up_div(exact, 100 * _SCALE)
        before += principal
    return total


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
                  i.total_fen - coalesce(ic.amount_fen, 0)
           FROM invoices i LEFT JOIN interest_charges ic USING (invoice_number)
           WHERE i.customer_id = ANY(%(ids)s) AND i.issued_on <= %(d)s
             AND NOT EXISTS (SELECT 1 FROM credit_notes n WHERE n.invoice_number = i.invoice_number
                             AND n.issued_on <= %(d)s)
             AND EXISTS (SELECT 1 FROM invoices o WHERE o.customer_id = i.customer_id
                         AND o.due_on < %(d)s)
           ORDER BY i.customer_id, i.period, i.issued_on, i.invoice_number""",
            args).fetchall():
        debts[cid].append(Debt(number, due_on, int(principal)))
    if not debts:
        return {}
    args["ids"] = sorted(debts)
    credits: dict[str, list[Credit]] = defaultdict(list)
    for cid, on, amount, target in conn.execute(
        f"""SELECT p.customer_id, p.paid_on, p.amount_fen, {PAYMENT_TARGET}
            FROM payments p {PAYMENT_TARGET_JOIN}
            WHERE p.customer_id = ANY(%(ids)s) AND p.paid_on <= %(d)s
            UNION ALL
            SELECT customer_id, charged_on, -amount_fen, NULL FROM customer_charges
            WHERE customer_id = ANY(%(ids)s) AND kind = 'write_off' AND charged_on <= %(d)s""",
            args).fetchall():
        credits[cid].append(Credit(on, int(amount), target))
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
    return {cid: (accrued_fen(ds, credits[cid], through, rates), charged[cid])
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


@per_chunk
def record_interest_after_close(ctx: CloseContext, written: Sequence[WrittenInvoice]) -> None:
    """After-write step of the close: record the interest each new invoice charged."""
    if not written:
        return
    through = ctx.end - timedelta(days=1)
    numbers = number_range(written)
    if numbers is not None:  # the close's invoices: by the primary key's range
        ctx.conn.execute(_RECORD_CHARGED.format(which="BETWEEN %(first)s AND %(last)s"),
                         {"through": through, "first": numbers[0], "last": numbers[1]})
    else:
        ctx.conn.execute(_RECORD_CHARGED.format(which="= ANY(%(numbers)s)"),
                         {"through": through, "numbers": [w.invoice_number for w in written]})


# Only interest lines are read, through their partial index (migration 0028), within the
# numbers' range (written on both tables: the planner carries equalities across a join,
# not ranges): a close runs this after each chunk of 2,500 invoices.
_RECORD_CHARGED = """
INSERT INTO interest_charges (invoice_number, customer_id, through_day, amount_fen)
SELECT i.invoice_number, i.customer_id, %(through)s, sum(l.amount_fen)
FROM invoice_lines l JOIN invoices i USING (invoice_number)
WHERE l.invoice_number {which} AND i.invoice_number {which} AND l.service = 'interest'
GROUP BY i.invoice_number, i.customer_id HAVING sum(l.amount_fen) > 0"""
