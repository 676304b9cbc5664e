"""Recording payments (uplate) from banks, post offices and cash desks.

Each payment is matched to a customer without a person: a valid payment reference (poziv
na broj, check digits verified first) names the invoice and so the customer; otherwise
the customer code given with the payment is used. The bank's transaction id
(``payment_id``) makes recording idempotent: the same payment again is a ``duplicate``;
the same id with another amount, customer or date is refused, never posted twice.
One outcome per input, in order; a bad payment never stops the good ones. The caller owns
the transaction. Each accepted payment is booked in the general ledger (`billing.ledger`)
in that same transaction, and what a customer paid beyond what they owe becomes customer
credit (`billing.customer_credit`). Corrections are new rows, never edits
(`billing.payment_corrections`): a reversal or a refund is a negative payment row.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import psycopg

from billing import BillingError
from billing.customer_credit import settle_credit
from billing.ledger import Chart, PaymentFacts, load_chart
from billing.ledger_posting import lock_counters, post_payments
from billing.outbox import add_payment_events
from billing.reference import make_payment_reference, parse_payment_reference
from rating.money import format_km, parse_amount_fen

ACCEPTED, DUPLICATE, REJECTED = "accepted", "duplicate", "rejected"
RESERVED_PREFIXES = ("STORNO/", "POVRAT/")  # ids of reversals and refunds
MAX_AMOUNT_FEN = 100_000_000_000  # one billion KM: anything above is a data error
_CUSTOMER_ID = re.compile(r"^[0-9]{6,10}$")
_AMOUNT = re.compile(r"^[+-]?[0-9]+(\.[0-9]+)?$")
_DAY = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


@dataclass(frozen=True, slots=True)
class PaymentOutcome:
    status: str  # accepted | duplicate | rejected
    reason: str | None = None
    payment_id: str | None = None
    customer_id: str | None = None
    invoice_number: str | None = None  # the invoice its reference names, if any
    conflict: bool = False  # rejected: the id is recorded with another amount/customer/date


@dataclass(frozen=True, slots=True)
class _Payment:
    payment_id: str
    customer_id: str | None
    paid_on: date
    amount_fen: int
    reference: str | None  # as given, trimmed


@dataclass(frozen=True, slots=True)
class _Recorded:
    customer_id: str
    paid_on: date
    amount_fen: int


def record_payments(
    conn: psycopg.Connection, payments: Sequence[Mapping[str, Any]], *, channel: str,
    chart: Chart | None = None,
) -> list[PaymentOutcome]:
    """Match and store payments and book the accepted ones with `chart` (default: the
    packaged chart of accounts); see the module docstring. Commits nothing."""
    if not isinstance(channel, str) or not channel.strip():
        raise BillingError("channel: is required")
    outcomes: list[PaymentOutcome | None] = [None] * len(payments)
    parsed: list[tuple[int, _Payment]] = []
    for i, obj in enumerate(payments):
        try:
            parsed.append((i, _decode(obj)))
        except BillingError as exc:
            outcomes[i] = PaymentOutcome(REJECTED, str(exc), _payment_id_of(obj))
    invoices = _invoices_by_reference(conn, [p.reference for _, p in parsed if p.reference])
    known = _known_customers(conn, [p.customer_id for _, p in parsed if p.customer_id])
    recorded = _recorded(conn, [p.payment_id for _, p in parsed])
    to_insert: list[tuple[int, _Payment, str, str | None]] = []
    for i, p in parsed:
        try:
            customer_id, invoice_number = _match(p, invoices, known)
        except BillingError as exc:
            outcomes[i] = PaymentOutcome(REJECTED, str(exc), p.payment_id)
            continue
        mine = _Recorded(customer_id, p.paid_on, p.amount_fen)
        prior = recorded.get(p.payment_id)
        if prior is None:
            recorded[p.payment_id] = mine
            to_insert.append((i, p, customer_id, invoice_number))
        else:
            outcomes[i] = _against(p.payment_id, mine, prior, invoice_number)
    if to_insert:  # the ledger's counters first: a fixed lock order between importers
        lock_counters(conn, (t[1].paid_on.year for t in to_insert))
    inserted = _insert(conn, to_insert, channel)
    raced = [t for t in to_insert if t[1].payment_id not in inserted]
    now_recorded = _recorded(conn, [t[1].payment_id for t in raced]) if raced else {}
    for i, p, customer_id, invoice_number in to_insert:
        if p.payment_id in inserted:
            outcomes[i] = PaymentOutcome(ACCEPTED, None, p.payment_id, customer_id, invoice_number)
        else:  # another transaction recorded the same id meanwhile
            mine = _Recorded(customer_id, p.paid_on, p.amount_fen)
            outcomes[i] = _against(p.payment_id, mine, now_recorded[p.payment_id], invoice_number)
    booked = [
        PaymentFacts(p.payment_id, customer_id, p.paid_on, p.amount_fen, channel.strip(),
                     invoice_number)
        for _, p, customer_id, invoice_number in to_insert if p.payment_id in inserted
    ]
    post_payments(conn, booked, chart=chart or load_chart())
    last_paid: dict[str, date] = {}
    for f in booked:
        last_paid[f.customer_id] = max(f.paid_on, last_paid.get(f.customer_id, f.paid_on))
    settle_credit(conn, last_paid, on=last_paid, chart=chart)  # overpayments → credit (4310)
    add_payment_events(conn, sorted(inserted))  # outbox, same transaction
    return [o or PaymentOutcome(REJECTED, "not processed") for o in outcomes]


def balance_fen(conn: psycopg.Connection, customer_id: str) -> int:
    """Sum of the customer's invoice totals minus their credit notes and payments, in
    feninga (positive: the customer owes)."""
    row = conn.execute(
        """SELECT (SELECT coalesce(sum(total_fen), 0) FROM invoices i
                   WHERE i.customer_id = c.customer_id)
                - (SELECT coalesce(sum(total_fen), 0) FROM credit_notes n
                   WHERE n.customer_id = c.customer_id)
                - (SELECT coalesce(sum(amount_fen), 0) FROM payments p
                   WHERE p.customer_id = c.customer_id)
           FROM customers c WHERE c.customer_id = %s""",
        (customer_id,),
    ).fetchone()
    if row is None:
        raise BillingError(f"customer_id: unknown customer {customer_id!r}")
    return int(row[0])


def _payment_id_of(obj: Any) -> str | None:
    value = obj.get("payment_id") if isinstance(obj, Mapping) else None
    return value.strip()[:100] if isinstance(value, str) else None


def _decode(obj: Any) -> _Payment:
    if not isinstance(obj, Mapping):
        raise BillingError("payment: must be an object")
    payment_id = obj.get("payment_id")
    if not isinstance(payment_id, str) or not payment_id.strip():
        raise BillingError("payment_id: is required (the bank's unique transaction reference)")
    payment_id = payment_id.strip()
    if len(payment_id) > 100 or not payment_id.isprintable():
        raise BillingError("payment_id: at most 100 printable characters")
    if payment_id.upper().startswith(RESERVED_PREFIXES):
        raise BillingError(f"payment_id: {payment_id!r} starts with a prefix reserved for"
                           f" corrections ({', '.join(RESERVED_PREFIXES)})")
    customer_id = obj.get("customer_id")
    if customer_id in (None, ""):
        customer_id = None
    elif not isinstance(customer_id, str) or not _CUSTOMER_ID.match(customer_id.strip()):
        raise BillingError(f"customer_id: must be 6–10 digits, got {customer_id!r}")
    else:
        customer_id = customer_id.strip()
    paid_on_text = obj.get("paid_on")
    try:
        if not isinstance(paid_on_text, str) or not _DAY.match(paid_on_text):
            raise ValueError
        paid_on = date.fromisoformat(paid_on_text)
    except ValueError:
        raise BillingError(f"paid_on: must be a date YYYY-MM-DD, got {paid_on_text!r}") from None
    amount = obj.get("amount")
    if isinstance(amount, str):
        amount = amount.strip()
    if isinstance(amount, bool) or not isinstance(amount, str | int | Decimal) or (
        isinstance(amount, str) and not _AMOUNT.match(amount)
    ):
        raise BillingError(
            f"amount: must be a decimal string in KM with a decimal point, such as '45.20',"
            f" got {amount!r}"
        )
    try:
        amount_fen = parse_amount_fen(amount)
    except ValueError as exc:
        raise BillingError(f"amount: {exc}") from exc
    if amount_fen <= 0:
        raise BillingError(f"amount: must be greater than zero, got {amount!r}")
    if amount_fen > MAX_AMOUNT_FEN:
        raise BillingError(f"amount: implausibly large: {amount!r}")
    reference = obj.get("reference")
    if reference in (None, ""):
        reference = None
    elif not isinstance(reference, str) or len(reference) > 100:
        raise BillingError("reference: must be text of at most 100 characters")
    else:
        reference = reference.strip() or None
    return _Payment(payment_id, customer_id, paid_on, amount_fen, reference)


def _normalized(reference: str) -> str | None:
    """The 10 digits of a reference whose check digits are right, else None."""
    try:
        yy, seq = parse_payment_reference(reference)
    except BillingError:
        return None
    return make_payment_reference(2000 + yy, seq)


def _match(
    p: _Payment, invoices: dict[str, tuple[str, str]], known: set[str]
) -> tuple[str, str | None]:
    """(customer_id, invoice_number or None) of a payment, or BillingError with the reason."""
    why_not_reference = None
    if p.reference is not None:
        try:
            parse_payment_reference(p.reference)
        except BillingError as exc:
            why_not_reference = str(exc)
        else:
            found = invoices.get(_normalized(p.reference) or "")
            if found is not None:
                invoice_number, owner = found
                if p.customer_id is not None and p.customer_id != owner:
                    raise BillingError(
                        f"reference {p.reference} is invoice {invoice_number} of customer "
                        f"{owner}, not of customer_id {p.customer_id}"
                    )
                return owner, invoice_number
            why_not_reference = f"reference: no invoice carries reference {p.reference!r}"
    if p.customer_id is not None:
        if p.customer_id not in known:
            raise BillingError(f"customer_id: unknown customer {p.customer_id}")
        return p.customer_id, None
    raise BillingError(why_not_reference or "customer_id or reference: one is required")


def _against(
    payment_id: str, mine: _Recorded, prior: _Recorded, invoice_number: str | None
) -> PaymentOutcome:
    if mine == prior:
        return PaymentOutcome(DUPLICATE, None, payment_id, prior.customer_id, invoice_number)
    return PaymentOutcome(
        REJECTED,
        f"conflicts with recorded payment {payment_id} (customer {prior.customer_id}, "
        f"{format_km(prior.amount_fen)} KM on {prior.paid_on})",
        payment_id,
        conflict=True,
    )


def _invoices_by_reference(conn: psycopg.Connection, references: list[str]
                           ) -> dict[str, tuple[str, str]]:
    keys = [k for k in (_normalized(r) for r in references) if k]
    if not keys:
        return {}
    rows = conn.execute(
        "SELECT payment_reference, invoice_number, customer_id FROM invoices"
        " WHERE payment_reference = ANY(%s)", (keys,))
    return {ref: (number, customer) for ref, number, customer in rows}


def _known_customers(conn: psycopg.Connection, customer_ids: list[str]) -> set[str]:
    if not customer_ids:
        return set()
    rows = conn.execute("SELECT customer_id FROM customers WHERE customer_id = ANY(%s)",
                        (customer_ids,))
    return {r[0] for r in rows}


def _recorded(conn: psycopg.Connection, payment_ids: list[str]) -> dict[str, _Recorded]:
    if not payment_ids:
        return {}
    rows = conn.execute(
        "SELECT payment_id, customer_id, paid_on, amount_fen FROM payments"
        " WHERE payment_id = ANY(%s)", (payment_ids,))
    return {pid: _Recorded(customer, paid_on, amount) for pid, customer, paid_on, amount in rows}


def _insert(conn: psycopg.Connection, rows: list[tuple[int, _Payment, str, str | None]],
            channel: str) -> set[str]:
    if not rows:
        return set()
    cols: tuple[list[Any], ...] = ([], [], [], [], [])
    for _, p, customer_id, _ in rows:
        reference = (_normalized(p.reference) or p.reference) if p.reference else None
        for col, value in zip(cols, (p.payment_id, customer_id, p.paid_on, p.amount_fen,
                                     reference), strict=True):
            col.append(value)
    inserted = conn.execute(
        """INSERT INTO payments (payment_id, customer_id, paid_on, amount_fen, reference, channel)
           SELECT *, %s FROM unnest(%s::text[], %s::text[], %s::date[], %s::bigint[], %s::text[])
           ON CONFLICT (payment_id) DO NOTHING
           RETURNING payment_id""",
        (channel.strip(), *cols),
    )
    return {r[0] for r in inserted}
