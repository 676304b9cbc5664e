"""Corrections of payments, as new records and postings, never edits.

* `reverse_payment`: a payment matched to the wrong customer is cancelled by a reversal row
  (``STORNO/<id>``, the negative amount, the reason and the operator) and the storno of its
  journal entry. Since every balance, FIFO coverage and interest figure sums the payment
  rows, the reversal releases what the payment covered. The money is then either recorded
  for the right customer at once (``PREKNJ/<id>``, booked like any payment, on the day it
  was paid) or returned to the clerk's queue of unmatched payments under that same id.
* `refund_credit`: customer credit paid back (``POVRAT/<customer>/<n>``, a negative row):
  debit customer credit (4310), credit the bank.

The customer's credit is settled in the same transaction (`billing.customer_credit`).
Every new row is reported on ``billing.payments.v1`` through the transactional outbox
(`billing.outbox.add_payment_events`): the reversal and the refund with ``kind`` and their
negative amount, a re-matched payment as a payment. Functions write in the caller's
transaction and commit nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time
from typing import Any

import psycopg

from billing import BillingError
from billing.customer_credit import (
    CreditMove,
    balances,
    book_moves,
    lock_customers,
    settle_credit,
)
from billing.ledger import Chart, EntryDraft, LineDraft, PaymentFacts, load_chart, reversal_of
from billing.ledger_posting import lock_counters, post_entries, post_payments
from billing.outbox import add_payment_events
from rating.calendar import LOCAL_TZ
from rating.money import format_km

REVERSAL, REMATCH, REFUND = "STORNO/", "PREKNJ/", "POVRAT/"
MAX_REFUND_FEN = 100_000_000_000


@dataclass(frozen=True, slots=True)
class ReversalResult:
    payment_id: str
    reversal_id: str
    customer_id: str
    amount_fen: int
    rematched_id: str | None  # the payment recorded for the right customer, if any
    rematched_to: str | None
    queued_id: str | None  # the id it waits under in the unmatched queue, if queued


def _text(value: object, field: str, limit: int) -> str:
    if not isinstance(value, str) or not 1 <= len(value.strip()) <= limit:
        raise BillingError(f"{field}: 1–{limit} characters required")
    return value.strip()


def reverse_payment(
    conn: psycopg.Connection, payment_id: str, *, reason: str, on: date, operator: str,
    rematch_to: str | None = None, at: datetime | None = None, chart: Chart | None = None,
) -> ReversalResult:
    """Reverse payment `payment_id` on day `on`; with `rematch_to` record it for that
    customer, otherwise queue it as unmatched (`at`: when it was queued; default the start
    of `on`, local time). Raises `BillingError` naming the field for an unknown, already
    reversed or correction row, a day before the payment, an unknown customer or a
    re-match to the same customer."""
    why = _text(reason, "reason", 500)
    who = _text(operator, "operator", 100)
    if not isinstance(on, date):
        raise BillingError("on: a date is required")
    full = chart or load_chart()
    with conn.transaction():
        row = conn.execute(
            "SELECT customer_id, paid_on, amount_fen, reference, channel, kind FROM payments"
            " WHERE payment_id = %s FOR UPDATE", (payment_id,)).fetchone()  # one reversal at once
        if row is None:
            raise BillingError(f"payment_id: unknown payment {payment_id!r}")
        customer, paid_on, amount, reference, channel, kind = row
        if kind != "payment":
            raise BillingError(f"payment_id: {payment_id} is a {kind}, not a payment")
        if on < paid_on:
            raise BillingError(f"on: {on} is before the payment's day {paid_on}")
        if rematch_to is not None:
            if rematch_to == customer:
                raise BillingError(f"rematch_to: the payment is already customer {customer}'s")
            if conn.execute("SELECT 1 FROM customers WHERE customer_id = %s",
                            (rematch_to,)).fetchone() is None:
                raise BillingError(f"rematch_to: unknown customer {rematch_to!r}")
        lock_counters(conn, {on.year, paid_on.year})
        lock_customers(conn, [customer] + ([rematch_to] if rematch_to else []))
        if conn.execute("SELECT payment_id FROM payments WHERE reverses = %s FOR UPDATE",
                        (payment_id,)).fetchone() is not None:
            raise BillingError(f"payment_id: {payment_id} is already reversed")
        reversal_id = REVERSAL + payment_id
        conn.execute(
            """INSERT INTO payments (payment_id, customer_id, paid_on, amount_fen, reference,
                   channel, kind, reverses, reason, operator)
               VALUES (%s, %s, %s, %s, %s, %s, 'reversal', %s, %s, %s)""",
            (reversal_id, customer, on, -amount, reference, channel, payment_id, why, who))
        _post_storno(conn, payment_id, on, why, full)
        settle_credit(conn, [customer], on=on, chart=full, cause_out="reversal")
        new_id = REMATCH + payment_id
        if rematch_to is not None:
            conn.execute(
                """INSERT INTO payments (payment_id, customer_id, paid_on, amount_fen, channel)
                   VALUES (%s, %s, %s, %s, %s)""", (new_id, rematch_to, paid_on, amount, channel))
            post_payments(conn, [PaymentFacts(new_id, rematch_to, paid_on, int(amount), channel)],
                          chart=full)
            settle_credit(conn, [rematch_to], on=paid_on, chart=full)
        else:
            when = at or datetime.combine(on, time(0), tzinfo=LOCAL_TZ).astimezone(UTC)
            conn.execute(
                """INSERT INTO unmatched_payments (payment_id, kind, source, paid_on, amount_fen,
                       reference, reason, received_at)
                   VALUES (%s, 'unmatched', 'reversal', %s, %s, %s, %s, %s)""",
                (new_id, paid_on, amount, reference,
                 f"reversed from customer {customer} by {who}: {why}"[:500], when))
        add_payment_events(conn, [reversal_id] + ([new_id] if rematch_to else []))
    return ReversalResult(payment_id, reversal_id, customer, int(amount),
                          new_id if rematch_to else None, rematch_to,
                          None if rematch_to else new_id)


def _post_storno(conn: psycopg.Connection, payment_id: str, on: date, why: str,
                 chart: Chart) -> None:
    found = conn.execute("SELECT entry_number, entry_date FROM journal_entries"
                         " WHERE kind = 'payment' AND source_document = %s",
                         (payment_id,)).fetchone()
    if found is None:
        raise BillingError(f"payment_id: {payment_id} has no journal entry yet; book it first"
                           " (ledger post_missing)")
    entry_no, entry_date = found
    lines = tuple(LineDraft(a, int(d), int(c), cust) for a, cust, d, c in conn.execute(
        "SELECT account, customer_id, debit_fen, credit_fen FROM journal_lines"
        " WHERE entry_number = %s ORDER BY line_no", (entry_no,)))
    storno = replace(reversal_of(entry_no, EntryDraft("payment", payment_id, entry_date, "",
                                                      lines), on=on),
                     description=f"Storno {entry_no}: uplata {payment_id} – {why}"[:200])
    if post_entries(conn, [storno], chart=chart) == [None]:
        raise BillingError(f"payment_id: the entry {entry_no} of {payment_id} is already"
                           " reversed")


def refund_credit(
    conn: psycopg.Connection, customer_id: str, amount_fen: int, *, reason: str, on: date,
    operator: str | None = None, channel: str = "bank", chart: Chart | None = None,
) -> str:
    """Pay back `amount_fen` of the customer's credit on day `on`; return the refund's id.
    Raises `BillingError` for an unknown customer, an amount that is not a positive whole
    number of feninga or exceeds the credit the customer holds."""
    why = _text(reason, "reason", 500)
    who = None if operator is None else _text(operator, "operator", 100)
    if isinstance(amount_fen, bool) or not isinstance(amount_fen, int) or not (
            0 < amount_fen <= MAX_REFUND_FEN):
        raise BillingError(f"amount_fen: a positive whole number of feninga, got {amount_fen!r}")
    if not isinstance(on, date):
        raise BillingError("on: a date is required")
    full = chart or load_chart()
    with conn.transaction():
        if not balances(conn, [customer_id]):
            raise BillingError(f"customer_id: unknown customer {customer_id!r}")
        lock_counters(conn, [on.year])
        lock_customers(conn, [customer_id])
        settle_credit(conn, [customer_id], on=on, chart=full)
        held = balances(conn, [customer_id])[customer_id][1]
        if amount_fen > held:
            raise BillingError(f"amount_fen: {format_km(amount_fen)} KM exceeds the customer's"
                               f" credit of {format_km(held)} KM")
        row = conn.execute("SELECT count(*) FROM payments WHERE customer_id = %s"
                           " AND kind = 'refund'", (customer_id,)).fetchone()
        refund_id = f"{REFUND}{customer_id}/{(int(row[0]) if row else 0) + 1}"
        conn.execute(
            """INSERT INTO payments (payment_id, customer_id, paid_on, amount_fen, channel, kind,
                   reason, operator) VALUES (%s, %s, %s, %s, %s, 'refund', %s, %s)""",
            (refund_id, customer_id, on, -amount_fen, channel, why, who))
        book_moves(conn, [CreditMove(customer_id, on, -amount_fen, "refund",
                                     counter_account=full.channel_account(channel),
                                     about=refund_id)], chart=full)
        add_payment_events(conn, [refund_id])
    return refund_id


def corrections(conn: psycopg.Connection, customer_id: str) -> list[dict[str, Any]]:
    """The customer's reversals and refunds, oldest first (for operator screens)."""
    return [
        {"payment_id": pid, "kind": kind, "on": on, "amount_fen": int(amount),
         "reverses": reverses, "reason": why, "operator": who}
        for pid, kind, on, amount, reverses, why, who in conn.execute(
            "SELECT payment_id, kind, paid_on, amount_fen, reverses, reason, operator"
            " FROM payments WHERE customer_id = %s AND kind <> 'payment'"
            " ORDER BY paid_on, received_at, payment_id", (customer_id,))
    ]
