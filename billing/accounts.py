"""Read side of a customer's account, as the portal shows it.

Balance = all invoice totals − all credit notes − all payments (positive: the customer
owes). Payments are allocated to invoices to give each invoice a status
(`billing.allocation`): a payment whose reference names an invoice pays that invoice, the
rest oldest first (FIFO); an invoice cancelled by a credit note (`billing.credit_notes`,
always in full) is covered by it, takes no payment and has the status "credited".
Per service and month the portal shows a quantity and an amount including VAT:

* quantity: the sum of the service's metered lines (unit kWh for electricity across
  registers, m3 for water); services without a meter (waste) sum the lines in the unit
  of their first line ("month" per household, "m2" per area);
* amount: for each VAT rate on the service's lines,
  ``round_half_up(net_of_service × (1 + rate / 100))``, summed. Because the invoice rounds
  VAT once per rate over all services, the service amounts may differ from the invoice
  total by a fening or two; the invoice total stays authoritative.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import psycopg

from billing.aging import PAYMENT_TARGET, PAYMENT_TARGET_JOIN
from billing.allocation import Credit, Debt, cover, fifo
from rating.calendar import previous_period
from rating.money import vat_fen

SERVICE_ORDER = ("electricity", "water", "waste")
METERED_UNITS = {"electricity": "kWh", "water": "m3"}
PAID, PARTLY_PAID, OVERDUE, OPEN = "paid", "partly_paid", "overdue", "open"
CREDITED = "credited"


@dataclass(frozen=True, slots=True)
class ServiceMonth:
    quantity_milli: int
    unit: str
    amount_fen: int  # including VAT


@dataclass(frozen=True, slots=True)
class InvoiceState:
    number: str
    period: str
    issued_on: date
    due_on: date
    total_fen: int
    covered_fen: int  # part of the total that payments cover (`billing.allocation`)
    status: str


@dataclass(frozen=True, slots=True)
class InvoiceLine:
    service: str
    metering_point_id: str | None
    description: str
    register: str | None
    quantity_milli: int
    unit: str
    unit_price_micro: int
    amount_fen: int
    vat_rate: Decimal


@dataclass(frozen=True, slots=True)
class VatRow:
    vat_rate: Decimal
    base_fen: int
    vat_fen: int


@dataclass(frozen=True)
class InvoiceDetail:
    state: InvoiceState
    net_fen: int
    vat_fen: int
    payment_reference: str
    lines: list[InvoiceLine]
    vat_rows: list[VatRow]


@dataclass(frozen=True)
class AccountSummary:
    customer_id: str
    name: str
    balance_fen: int
    last_payment: tuple[date, int] | None
    last_period: str | None
    last: dict[str, ServiceMonth] = field(default_factory=dict)
    previous_period: str | None = None
    previous: dict[str, ServiceMonth] = field(default_factory=dict)
    change_percent: dict[str, float] = field(default_factory=dict)


# ---- pure helpers -------------------------------------------------------------------


def amount_with_vat(net_fen: int, rate_percent: Decimal) -> int:
    """round_half_up(net × (1 + rate/100)) in feninga (= net + VAT rounded half up)."""
    return net_fen + vat_fen(net_fen, rate_percent)


def allocate_fifo(totals: Sequence[int], paid_fen: int) -> list[int]:
    """How much of each invoice (oldest first) the paid sum covers (pooled FIFO)."""
    return fifo(totals, paid_fen)


def invoice_status(total_fen: int, covered_fen: int, due_on: date, today: date) -> str:
    """paid → overdue (past due, not fully paid, even if partly) → partly_paid → open."""
    if covered_fen >= total_fen:
        return PAID
    if due_on < today:
        return OVERDUE
    return PARTLY_PAID if covered_fen > 0 else OPEN


def change_percent(last_fen: int, previous_fen: int | None) -> float | None:
    """(last − previous) / previous × 100, one decimal half up; None without a base."""
    if previous_fen is None or previous_fen <= 0:
        return None
    ratio = Decimal(last_fen - previous_fen) * 100 / Decimal(previous_fen)
    return float(ratio.quantize(Decimal("0.1"), ROUND_HALF_UP))


def service_key(service: str) -> tuple[int, str]:
    order = SERVICE_ORDER.index(service) if service in SERVICE_ORDER else len(SERVICE_ORDER)
    return order, service


# ---- queries ------------------------------------------------------------------------


def customer_name(conn: psycopg.Connection, customer_id: str) -> str | None:
    row = conn.execute(
        "SELECT name FROM customers WHERE customer_id = %s", (customer_id,)
    ).fetchone()
    return None if row is None else str(row[0])


def account_balance_fen(conn: psycopg.Connection, customer_id: str) -> int:
    row = conn.execute(
        """SELECT (SELECT coalesce(sum(total_fen), 0) FROM invoices WHERE customer_id = %s)
                - (SELECT coalesce(sum(total_fen), 0) FROM credit_notes WHERE customer_id = %s)
                - (SELECT coalesce(sum(amount_fen), 0) FROM payments WHERE customer_id = %s)""",
        (customer_id, customer_id, customer_id),
    ).fetchone()
    return int(row[0]) if row else 0


def last_payment(conn: psycopg.Connection, customer_id: str) -> tuple[date, int] | None:
    row = conn.execute(
        """SELECT paid_on, amount_fen FROM payments WHERE customer_id = %s AND kind = 'payment'
           ORDER BY paid_on DESC, received_at DESC, payment_id DESC LIMIT 1""",
        (customer_id,),
    ).fetchone()
    return None if row is None else (row[0], int(row[1]))


def invoiced_periods(conn: psycopg.Connection, customer_id: str, limit: int) -> list[str]:
    """The customer's last ``limit`` invoiced periods, newest first."""
    rows = conn.execute(
        "SELECT DISTINCT period FROM invoices WHERE customer_id = %s ORDER BY period DESC LIMIT %s",
        (customer_id, limit),
    ).fetchall()
    return [str(r[0]) for r in rows]


def services_by_period(
    conn: psycopg.Connection, customer_id: str, periods: Sequence[str]
) -> dict[str, dict[str, ServiceMonth]]:
    """Quantity and amount (VAT included) per period and service, from invoice lines."""
    rows = conn.execute(
        f"""SELECT {_LINE_SUMS}
           FROM invoices i JOIN invoice_lines l USING (invoice_number)
           WHERE i.customer_id = %s AND i.period = ANY(%s)
             AND l.service = ANY(%s)  -- consumption, not late-payment interest
           GROUP BY i.period, l.service, l.unit, l.vat_rate""",
        (customer_id, list(periods), list(SERVICE_ORDER)),
    ).fetchall()
    return months_of_lines(rows, periods)


# the per (period, service, unit, VAT rate) sums that months_of_lines reads
_LINE_SUMS = """i.period, l.service, l.unit, l.vat_rate, sum(l.quantity_milli),
                  sum(l.amount_fen), min(l.line_no)"""


def months_of_lines(
    rows: Sequence[tuple[Any, ...]], periods: Sequence[str]
) -> dict[str, dict[str, ServiceMonth]]:
    """Rows of ``_LINE_SUMS`` → period → service → month (VAT added per rate)."""
    net: dict[tuple[str, str, Decimal], int] = defaultdict(int)
    qty: dict[tuple[str, str, str], int] = defaultdict(int)
    first_unit: dict[tuple[str, str], tuple[int, str]] = {}
    for period, service, unit, rate, quantity, amount, first_line in rows:
        net[(period, service, rate)] += int(amount)
        qty[(period, service, unit)] += int(quantity)
        key = (period, service)
        if key not in first_unit or first_line < first_unit[key][0]:
            first_unit[key] = (first_line, unit)
    amounts: dict[tuple[str, str], int] = defaultdict(int)
    for (period, service, rate), net_fen in net.items():
        amounts[(period, service)] += amount_with_vat(net_fen, rate)
    out: dict[str, dict[str, ServiceMonth]] = {p: {} for p in periods}
    for (period, service), amount in sorted(amounts.items(), key=lambda kv: service_key(kv[0][1])):
        unit = METERED_UNITS.get(service) or first_unit[(period, service)][1]
        out[period][service] = ServiceMonth(qty.get((period, service, unit), 0), unit, amount)
    return out


# One round trip for the head of the summary: name, balance (as account_balance_fen),
# last payment (as last_payment) and the latest invoiced period (as invoiced_periods(…, 1)).
_SUMMARY_HEAD = """
SELECT c.name,
       (SELECT coalesce(sum(total_fen), 0) FROM invoices WHERE customer_id = c.customer_id)
     - (SELECT coalesce(sum(total_fen), 0) FROM credit_notes WHERE customer_id = c.customer_id)
     - (SELECT coalesce(sum(amount_fen), 0) FROM payments WHERE customer_id = c.customer_id),
       p.paid_on, p.amount_fen,
       (SELECT max(period) FROM invoices WHERE customer_id = c.customer_id)
FROM customers c
LEFT JOIN LATERAL (SELECT paid_on, amount_fen FROM payments WHERE customer_id = c.customer_id
                     AND kind = 'payment'  -- not a reversal or refund
                   ORDER BY paid_on DESC, received_at DESC, payment_id DESC LIMIT 1) p ON true
WHERE c.customer_id = %s
"""


def account_summary(conn: psycopg.Connection, customer_id: str) -> AccountSummary | None:
    head = conn.execute(_SUMMARY_HEAD, (customer_id,)).fetchone()
    if head is None:
        return None
    name, balance, paid_on, paid_fen, last_p = head
    paid = None if paid_on is None else (paid_on, int(paid_fen))
    if last_p is None:
        return AccountSummary(customer_id, str(name), int(balance), paid, None)
    prev_p = previous_period(last_p)
    months = services_by_period(conn, customer_id, [last_p, prev_p])
    last, previous = months[last_p], months[prev_p]
    changes = {}
    for service, month in last.items():
        before = previous.get(service)
        pct = change_percent(month.amount_fen, before.amount_fen if before else None)
        if pct is not None:
            changes[service] = pct
    return AccountSummary(
        customer_id, str(name), int(balance), paid, last_p, last,
        prev_p if previous else None, previous, changes,
    )


def consumption_series(
    conn: psycopg.Connection, customer_id: str, months: int
) -> list[tuple[str, str, ServiceMonth]]:
    """(period, service, month) over the last ``months`` invoiced periods, oldest first.

    One query: the periods (as invoiced_periods) and their lines (as services_by_period).
    """
    rows = conn.execute(
        f"""WITH p AS (SELECT DISTINCT period FROM invoices WHERE customer_id = %(c)s
                       ORDER BY period DESC LIMIT %(n)s)
            SELECT {_LINE_SUMS}
            FROM invoices i JOIN invoice_lines l USING (invoice_number)
            WHERE i.customer_id = %(c)s AND i.period IN (SELECT period FROM p)
              AND l.service = ANY(%(s)s)  -- consumption, not late-payment interest
            GROUP BY i.period, l.service, l.unit, l.vat_rate""",
        {"c": customer_id, "n": months, "s": list(SERVICE_ORDER)},
    ).fetchall()
    periods = sorted({str(r[0]) for r in rows})
    by_period = months_of_lines(rows, periods)
    return [(p, s, m) for p in periods for s, m in by_period[p].items()]


def invoice_states(conn: psycopg.Connection, customer_id: str, today: date) -> list[InvoiceState]:
    """The customer's invoices with their status, newest first."""
    rows = conn.execute(
        """SELECT i.invoice_number, i.period, i.issued_on, i.due_on, i.total_fen,
                  EXISTS (SELECT 1 FROM credit_notes c WHERE c.invoice_number = i.invoice_number)
           FROM invoices i
           WHERE i.customer_id = %s ORDER BY i.period, i.issued_on, i.invoice_number""",
        (customer_id,),
    ).fetchall()
    credits = [Credit(on, int(amount), target) for on, amount, target in conn.execute(
        f"""SELECT p.paid_on, p.amount_fen, {PAYMENT_TARGET} FROM payments p {PAYMENT_TARGET_JOIN}
            WHERE p.customer_id = %s""", (customer_id,))]
    debts = [Debt(str(r[0]), r[3], int(r[4])) for r in rows if not r[5]]
    covered = dict(zip((d.number for d in debts), cover(debts, credits).covered_fen,
                       strict=True))
    states = [
        InvoiceState(str(n), str(p), iss, due, int(t), int(t), CREDITED) if credited else
        InvoiceState(str(n), str(p), iss, due, int(t), covered[n],
                     invoice_status(int(t), covered[n], due, today))
        for n, p, iss, due, t, credited in rows
    ]
    return states[::-1]


def invoice_detail(
    conn: psycopg.Connection, customer_id: str, number: str, today: date
) -> InvoiceDetail | None:
    """One of the customer's invoices; None if unknown or someone else's (indistinguishable)."""
    head = conn.execute(
        """SELECT net_fen, vat_fen, payment_reference FROM invoices
           WHERE invoice_number = %s AND customer_id = %s""",
        (number, customer_id),
    ).fetchone()
    if head is None:
        return None
    state = next(s for s in invoice_states(conn, customer_id, today) if s.number == number)
    lines = [
        InvoiceLine(r[0], r[1], r[2], r[3], int(r[4]), r[5], int(r[6]), int(r[7]), r[8])
        for r in conn.execute(
            """SELECT service, metering_point_id, description, register, quantity_milli, unit,
                      unit_price_micro, amount_fen, vat_rate
               FROM invoice_lines WHERE invoice_number = %s ORDER BY line_no""",
            (number,),
        )
    ]
    vat_rows = [
        VatRow(r[0], int(r[1]), int(r[2]))
        for r in conn.execute(
            "SELECT vat_rate, base_fen, vat_fen FROM invoice_vat WHERE invoice_number = %s"
            " ORDER BY vat_rate",
            (number,),
        )
    ]
    return InvoiceDetail(state, int(head[0]), int(head[1]), str(head[2]), lines, vat_rows)
