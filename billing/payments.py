"""Recording payments (uplate) from banks, post offices and cash desks.

Each payment is matched to a customer without a person: a valid payment reference (poziv
na broj, check digits verified first) names the invoice and so the customer; otherwise
the customer code given with the payment is used. The bank's transaction id
(``payment_id``) makes recording idempotent: the same payment again is a ``duplicate``;
the same id with another amount, customer or date is refused, never posted twice.
One outcome per input, in order; a bad payment never stops the good ones. The caller owns
the transaction. The work is set-based: one statement matches a whole batch (reference →
invoice, customer code, ids already recorded) and inserts what is new, so a bank statement
of 50,000 payments costs a few statements, not 50,000 round trips (`record_checked` takes
payments already read, as `billing.bank_import` does). Each accepted payment is booked in
the general ledger (`billing.ledger`) in that same transaction, and what a customer paid
beyond what they owe becomes customer credit (`billing.customer_credit`). Corrections are
new rows, never edits (`billing.payment_corrections`): a reversal or a refund is a negative
payment row.
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
from billing.ledger_posting import lock_counters, post_payment_ids, post_payments
from billing.outbox import add_payment_events
from billing.reference import make_payment_reference, parse_payment_reference
from rating.money import format_km, parse_amount_fen

ACCEPTED, DUPLICATE, REJECTED = "accepted", "duplicate", "rejected"
RESERVED_PREFIXES = ("STORNO/", "POVRAT/")  # ids of reversals and refunds
MAX_AMOUNT_FEN = 100_000_000_000  # one billion KM: anything above is a data error
# From this many payments in one call (a bank statement), their journal entries are made in
# SQL (`post_payment_ids`, ~2× cheaper); fewer (the cash desk) go through `post_payments`.
BOOK_IN_SQL_FROM = 20
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
class Payment:
    """A payment read from its source, before matching (`record_checked` checks it)."""

    payment_id: str
    customer_id: str | None  # the customer code given with it, 6–10 digits
    paid_on: date
    amount_fen: int
    reference: str | None  # as given, trimmed


@dataclass(frozen=True, slots=True)
class _Recorded:
    customer_id: str
    paid_on: date
    amount_fen: int


# One statement matches the whole batch and inserts what is new (set-based: the cost per
# payment is a few index probes, not a round trip). A payment's customer: the owner of the
# invoice its reference names (if a customer code is given too, it must agree), else the
# customer its code names. It is inserted if it has a customer, its id is not recorded yet
# and it is the first payment of the batch with that id and a customer; ON CONFLICT covers
# another transaction recording the same id meanwhile. Every row comes back (in input
# order) with what Python needs to explain the ones not inserted.
_MATCH_AND_INSERT = """
WITH s AS (
    SELECT * FROM unnest(%(ids)b::text[], %(codes)b::text[], %(days)b::date[],
                         %(amounts)b::bigint[], %(keys)b::text[], %(refs)b::text[])
             WITH ORDINALITY AS s(payment_id, code, paid_on, amount_fen, ref_key, reference, no)
), m AS (
    SELECT s.*, i.invoice_number, i.customer_id AS owner, c.customer_id AS known,
           CASE WHEN i.customer_id IS NULL THEN c.customer_id
                WHEN s.code IS NULL OR s.code = i.customer_id THEN i.customer_id END
               AS customer_id,
           p.customer_id AS prior_customer, p.paid_on AS prior_paid_on,
           p.amount_fen AS prior_amount
    FROM s
    LEFT JOIN invoices i ON i.payment_reference = s.ref_key
    LEFT JOIN customers c ON c.customer_id = s.code
    LEFT JOIN payments p ON p.payment_id = s.payment_id
), f AS (
    SELECT m.*, customer_id IS NOT NULL AND prior_customer IS NULL
                AND no = min(no) FILTER (WHERE customer_id IS NOT NULL)
                         OVER (PARTITION BY payment_id) AS fresh
    FROM m
), ins AS (
    INSERT INTO payments (payment_id, customer_id, paid_on, amount_fen, reference, channel)
    SELECT payment_id, customer_id, paid_on, amount_fen, reference, %(channel)s
    FROM f WHERE fresh ORDER BY no
    ON CONFLICT (payment_id) DO NOTHING
    RETURNING payment_id
)
SELECT f.customer_id, f.invoice_number, ins.payment_id IS NOT NULL, f.fresh,
       f.owner, f.known, f.prior_customer, f.prior_paid_on, f.prior_amount
FROM f LEFT JOIN ins ON f.fresh AND ins.payment_id = f.payment_id
ORDER BY f.no
"""


def record_payments(
    conn: psycopg.Connection, payments: Sequence[Mapping[str, Any]], *, channel: str,
    chart: Chart | None = None,
) -> list[PaymentOutcome]:
    """Decode, match and store payments given as objects (``payment_id``, ``paid_on``
    YYYY-MM-DD, ``amount`` in KM as a decimal string, optional ``customer_id`` and
    ``reference``) and book the accepted ones with `chart` (default: the packaged chart of
    accounts); see the module docstring. Commits nothing."""
    outcomes: list[PaymentOutcome | None] = [None] * len(payments)
    decoded: list[tuple[int, Payment]] = []
    for i, obj in enumerate(payments):
        try:
            decoded.append((i, _decode(obj)))
        except BillingError as exc:
            outcomes[i] = PaymentOutcome(REJECTED, str(exc), _payment_id_of(obj))
    recorded = record_checked(conn, [p for _, p in decoded], channel=channel, chart=chart)
    for (i, _), out in zip(decoded, recorded, strict=True):
        outcomes[i] = out
    return [o or PaymentOutcome(REJECTED, "not processed") for o in outcomes]


def record_checked(
    conn: psycopg.Connection, payments: Sequence[Payment], *, channel: str,
    chart: Chart | None = None,
) -> list[PaymentOutcome]:
    """Match, store and book `payments` (already read: a bank statement's, say) with one
    statement for the batch; one outcome per payment, in order. Commits nothing."""
    if not isinstance(channel, str) or not channel.strip():
        raise BillingError("channel: is required")
    outcomes: list[PaymentOutcome | None] = [None] * len(payments)
    batch: list[tuple[int, Payment]] = []
    for i, p in enumerate(payments):
        why = _why_invalid(p)
        if why is None:
            batch.append((i, p))
        else:
            outcomes[i] = PaymentOutcome(REJECTED, why, p.payment_id[:100])
    if batch:
        _match_and_insert(conn, batch, outcomes, channel.strip(), chart or load_chart())
    return [o or PaymentOutcome(REJECTED, "not processed") for o in outcomes]


def _match_and_insert(conn: psycopg.Connection, batch: list[tuple[int, Payment]],
                      outcomes: list[PaymentOutcome | None], channel: str, chart: Chart) -> None:
    # the ledger's counters first: a fixed lock order between importers
    lock_counters(conn, {p.paid_on.year for _, p in batch})
    keys = [_reference_key(p.reference) if p.reference else None for _, p in batch]
    rows = conn.execute(_MATCH_AND_INSERT, {
        "ids": [p.payment_id for _, p in batch],
        "codes": [p.customer_id for _, p in batch],
        "days": [p.paid_on for _, p in batch],
        "amounts": [p.amount_fen for _, p in batch],
        "keys": keys,
        "refs": [k or p.reference for k, (_, p) in zip(keys, batch, strict=True)],
        "channel": channel,
    }).fetchall()
    raced = [p.payment_id for (_, p), r in zip(batch, rows, strict=True) if r[3] and not r[2]]
    first = _recorded(conn, raced)  # another transaction recorded these meanwhile
    booked: list[PaymentFacts] = []
    for (i, p), (customer_id, invoice_number, inserted, _fresh, owner, known, prior_customer,
                 prior_paid_on, prior_amount) in zip(batch, rows, strict=True):
        if inserted:
            outcomes[i] = PaymentOutcome(ACCEPTED, None, p.payment_id, customer_id,
                                         invoice_number)
            booked.append(PaymentFacts(p.payment_id, customer_id, p.paid_on, p.amount_fen,
                                       channel, invoice_number))
            first[p.payment_id] = _Recorded(customer_id, p.paid_on, p.amount_fen)
        elif customer_id is None:
            outcomes[i] = PaymentOutcome(REJECTED, _why_unmatched(p, invoice_number, owner,
                                                                  known), p.payment_id)
        else:
            prior = (_Recorded(prior_customer, prior_paid_on, int(prior_amount))
                     if prior_customer is not None else first[p.payment_id])
            outcomes[i] = _against(p.payment_id, _Recorded(customer_id, p.paid_on,
                                                           p.amount_fen), prior, invoice_number)
    if len(booked) >= BOOK_IN_SQL_FROM:  # a statement: booked set-based, the same entries
        post_payment_ids(conn, [(f.payment_id, f.invoice_number) for f in booked],
                         channel=channel, chart=chart)
    else:
        post_payments(conn, booked, chart=chart)
    last_paid: dict[str, date] = {}
    for f in booked:
        last_paid[f.customer_id] = max(f.paid_on, last_paid.get(f.customer_id, f.paid_on))
    settle_credit(conn, last_paid, on=last_paid, chart=chart)  # overpayments → credit (4310)
    add_payment_events(conn, sorted(f.payment_id for f in booked))  # outbox, same transaction


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


def _decode(obj: Any) -> Payment:
    if not isinstance(obj, Mapping):
        raise BillingError("payment: must be an object")
    payment_id = obj.get("payment_id")
    if not isinstance(payment_id, str) or not payment_id.strip():
        raise BillingError("payment_id: is required (the bank's unique transaction reference)")
    payment_id = payment_id.strip()
    why = _why_bad_id(payment_id)
    if why is not None:
        raise BillingError(why)
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
    return Payment(payment_id, customer_id, paid_on, amount_fen, reference)


def _normalized(reference: str) -> str | None:
    """The 10 digits of a reference whose check digits are right, else None."""
    try:
        yy, seq = parse_payment_reference(reference)
    except BillingError:
        return None
    return make_payment_reference(2000 + yy, seq)


def _why_bad_id(payment_id: str) -> str | None:
    if not payment_id or len(payment_id) > 100 or not payment_id.isprintable():
        return "payment_id: at most 100 printable characters"
    if payment_id.upper().startswith(RESERVED_PREFIXES):
        return (f"payment_id: {payment_id!r} starts with a prefix reserved for corrections"
                f" ({', '.join(RESERVED_PREFIXES)})")
    return None


def _why_invalid(p: Payment) -> str | None:
    """What is wrong with a payment built by another reader than `_decode`, or None."""
    why = _why_bad_id(p.payment_id)
    if why is not None:
        return why
    if not 0 < p.amount_fen <= MAX_AMOUNT_FEN:
        return (f"amount: must be greater than zero, got {format_km(p.amount_fen)!r}"
                if p.amount_fen <= 0 else
                f"amount: implausibly large: {format_km(p.amount_fen)!r}")
    if p.customer_id is not None and not _CUSTOMER_ID.match(p.customer_id):
        return f"customer_id: must be 6–10 digits, got {p.customer_id!r}"
    if p.reference is not None and (len(p.reference) > 100 or "\x00" in p.reference):
        return "reference: must be text of at most 100 characters"
    return None


def _reference_key(reference: str) -> str | None:
    """`_normalized`, with a fast path for the compact form banks usually send."""
    if (len(reference) == 10 and reference.isascii() and reference.isdigit()
            and int(reference) % 97 == 1 and reference[2:8] != "000000"):
        return reference
    return _normalized(reference)


def _why_unmatched(p: Payment, invoice_number: str | None, owner: str | None,
                   known: str | None) -> str:
    """Why no customer was found for `p`: its reference's defect, or an invoice of another
    customer than its code names, or an unknown code, or nothing to match by."""
    why_not_reference = None
    if p.reference is not None:
        try:
            parse_payment_reference(p.reference)
        except BillingError as exc:
            why_not_reference = str(exc)
        else:
            if owner is not None:
                return (f"reference {p.reference} is invoice {invoice_number} of customer "
                        f"{owner}, not of customer_id {p.customer_id}")
            why_not_reference = f"reference: no invoice carries reference {p.reference!r}"
    if p.customer_id is not None and known is None:
        return f"customer_id: unknown customer {p.customer_id}"
    return why_not_reference or "customer_id or reference: one is required"


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


def _recorded(conn: psycopg.Connection, payment_ids: list[str]) -> dict[str, _Recorded]:
    if not payment_ids:
        return {}
    rows = conn.execute(
        "SELECT payment_id, customer_id, paid_on, amount_fen FROM payments"
        " WHERE payment_id = ANY(%s)", (payment_ids,))
    return {pid: _Recorded(customer, paid_on, amount) for pid, customer, paid_on, amount in rows}
