"""Customer credit (avans / preplata, account 4310): what a customer paid beyond what they
owe, kept as a liability and applied to their next invoice.

A customer's balance is invoices − credit notes + charges (interest letters, fees; a
write-off is a negative charge) − payments (reversals and refunds are negative payment
rows): their receivables in the ledger. Their open credit should be
``max(0, −balance)``: `settle_credit` moves the difference between that and the credit
held (the sum of their `customer_credit_moves`) with one journal entry per move (debit
receivables / credit 4310 or back), so receivables show what is owed and 4310 what is
owed *to* customers. It runs after payments are recorded, reversed or refunded, and in the
close (`apply_credit_after_close`): the credit held before the new invoice is applied to it
(recorded with the invoice number, shown as "credit applied" and a lower amount to pay).

A customer whose balance went negative by a document that does not settle (a credit
note) is settled by the next payment, correction or close. Work happens in the caller's
transaction; customers are locked (`lock_customers`) before their credit is read.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date

import psycopg

from billing.close_hooks import CloseContext, WrittenInvoice, number_range
from billing.ledger import Chart, entry_for_credit_move, load_chart
from billing.ledger_posting import post_entries
from rating.money import format_km


@dataclass(frozen=True, slots=True)
class CreditMove:
    customer_id: str
    on: date
    amount_fen: int  # > 0 into credit, < 0 out of it
    cause: str  # overpayment | applied | refund | reversal | correction
    invoice_number: str | None = None
    counter_account: str | None = None  # refund: the bank; default receivables
    about: str = ""  # for the entry's description


_BALANCES = """
SELECT c.customer_id,
       (SELECT coalesce(sum(total_fen), 0) FROM invoices i WHERE i.customer_id = c.customer_id)
     - (SELECT coalesce(sum(total_fen), 0) FROM credit_notes n
        WHERE n.customer_id = c.customer_id)
     - (SELECT coalesce(sum(amount_fen), 0) FROM payments p WHERE p.customer_id = c.customer_id)
     + (SELECT coalesce(sum(amount_fen), 0) FROM customer_charges g
        WHERE g.customer_id = c.customer_id),
       (SELECT coalesce(sum(amount_fen), 0) FROM customer_credit_moves m
        WHERE m.customer_id = c.customer_id)
FROM customers c WHERE c.customer_id = ANY(%s)
"""

# The same figures for many customers at once (a close: every invoiced customer): each table
# is summed once per customer and joined, instead of five look-ups per customer. Slower for
# a handful of customers (a payment), hence `_MANY`.
_IDS_GIVEN = "SELECT DISTINCT unnest(%(ids)s::text[]) AS customer_id"
_BALANCES_OF = """
WITH ids AS MATERIALIZED ({ids})
SELECT c.customer_id,
       (coalesce(i.s, 0) - coalesce(n.s, 0) - coalesce(p.s, 0) + coalesce(g.s, 0))::bigint
           AS balance,
       coalesce(m.s, 0)::bigint AS held
FROM customers c JOIN ids USING (customer_id)
LEFT JOIN (SELECT customer_id, sum(total_fen) AS s FROM invoices
           WHERE customer_id IN (SELECT customer_id FROM ids) GROUP BY 1) i USING (customer_id)
LEFT JOIN (SELECT customer_id, sum(total_fen) AS s FROM credit_notes
           WHERE customer_id IN (SELECT customer_id FROM ids) GROUP BY 1) n USING (customer_id)
LEFT JOIN (SELECT customer_id, sum(amount_fen) AS s FROM payments
           WHERE customer_id IN (SELECT customer_id FROM ids) GROUP BY 1) p USING (customer_id)
LEFT JOIN (SELECT customer_id, sum(amount_fen) AS s FROM customer_charges
           WHERE customer_id IN (SELECT customer_id FROM ids) GROUP BY 1) g USING (customer_id)
LEFT JOIN (SELECT customer_id, sum(amount_fen) AS s FROM customer_credit_moves
           WHERE customer_id IN (SELECT customer_id FROM ids) GROUP BY 1) m USING (customer_id)
"""
_BALANCES_MANY = _BALANCES_OF.format(ids=_IDS_GIVEN)
_MANY = 2_000

# A close's customers whose credit is concerned by their new invoice (the invoices numbered
# `first`..`last`): a balance before the invoice below zero, or credit held. Selected in
# SQL by the invoices' number range, so that the 100,000 customers of a close are neither
# sent nor returned.
_CONCERNED_BY_RANGE = f"""
WITH b AS ({_BALANCES_OF.format(ids=(
    "SELECT customer_id FROM invoices WHERE invoice_number BETWEEN %(first)s AND %(last)s"))})
SELECT b.customer_id
FROM b JOIN invoices w ON w.customer_id = b.customer_id
     AND w.invoice_number BETWEEN %(first)s AND %(last)s
WHERE b.balance - w.total_fen < 0 OR b.held <> 0
"""

_LOCK_CLASS, _LOCK_BUCKETS = 4310, 256


def lock_customers(conn: psycopg.Connection, customer_ids: Iterable[str]) -> None:
    """Serialize credit work per customer until the transaction ends. Customers share 256
    advisory locks (by hash), taken in ascending order in one statement: a close that
    settles thousands of customers holds at most 256 locks (PostgreSQL's lock table is
    small), and two transactions never wait on each other in a cycle."""
    ids = sorted(set(customer_ids))
    if ids:
        conn.execute(
            "SELECT pg_advisory_xact_lock(%s, b) FROM (SELECT DISTINCT hashtext(c) & %s AS b"
            " FROM unnest(%s::text[]) AS t(c) ORDER BY 1) AS buckets",
            (_LOCK_CLASS, _LOCK_BUCKETS - 1, ids))


def balances(conn: psycopg.Connection, customer_ids: Iterable[str]) -> dict[str, tuple[int, int]]:
    """customer → (balance, credit held) in feninga."""
    ids = sorted(set(customer_ids))
    if not ids:
        return {}
    if len(ids) >= _MANY:
        rows = conn.execute(_BALANCES_MANY, {"ids": ids}).fetchall()
    else:
        rows = conn.execute(_BALANCES, (ids,)).fetchall()
    return {c: (int(b), int(h)) for c, b, h in rows}


def open_credit_fen(conn: psycopg.Connection, customer_id: str) -> int:
    """The credit the customer holds (4310), in feninga."""
    row = conn.execute("SELECT coalesce(sum(amount_fen), 0) FROM customer_credit_moves"
                       " WHERE customer_id = %s", (customer_id,)).fetchone()
    return int(row[0]) if row else 0


def credit_applied_fen(conn: psycopg.Connection, invoice_number: str) -> int:
    """Credit applied to an invoice (0 if none): the amount to pay is its total less this."""
    row = conn.execute("SELECT coalesce(-sum(amount_fen), 0) FROM customer_credit_moves"
                       " WHERE invoice_number = %s", (invoice_number,)).fetchone()
    return int(row[0]) if row else 0


def book_moves(conn: psycopg.Connection, moves: Sequence[CreditMove], *, chart: Chart
               ) -> list[str]:
    """Write `moves` with one journal entry each; return the entry numbers."""
    moves = [m for m in moves if m.amount_fen != 0]
    if not moves:
        return []
    ids = [int(r[0]) for r in conn.execute(
        "SELECT nextval(pg_get_serial_sequence('customer_credit_moves', 'move_id'))"
        " FROM generate_series(1, %s)", (len(moves),))]
    drafts = [entry_for_credit_move(i, m.customer_id, m.amount_fen, m.on, _describe(m),
                                    chart=chart, counter_account=m.counter_account)
              for i, m in zip(ids, moves, strict=True)]
    numbers = post_entries(conn, drafts, chart=chart)
    if any(n is None for n in numbers):  # the ids come from a sequence: cannot happen
        raise RuntimeError("credit move booked twice")
    with conn.cursor() as cur, cur.copy(
            "COPY customer_credit_moves (move_id, customer_id, moved_on, amount_fen, cause,"
            " invoice_number, entry_number) FROM STDIN") as copy:
        for i, m, n in zip(ids, moves, numbers, strict=True):
            copy.write_row((i, m.customer_id, m.on, m.amount_fen, m.cause, m.invoice_number, n))
    return [str(n) for n in numbers]


def settle_credit(
    conn: psycopg.Connection, customer_ids: Iterable[str], *, on: date | dict[str, date],
    chart: Chart | None = None, cause_out: str = "correction",
) -> dict[str, int]:
    """Bring each customer's credit held to ``max(0, −balance)``; return the moves made
    (customer → feninga, > 0 into credit). `on` is the day of the moves (or per customer).
    Only customers with a credit balance or credit held are locked."""
    ids = sorted(set(customer_ids))
    found = balances(conn, ids)
    concerned = [c for c, (b, held) in found.items() if b < 0 or held != 0]
    if not concerned:
        return {}
    lock_customers(conn, concerned)
    moves = []
    for c, (balance, held) in sorted(balances(conn, concerned).items()):
        delta = max(0, -balance) - held
        if delta:
            day = on[c] if isinstance(on, dict) else on
            moves.append(CreditMove(c, day, delta, "overpayment" if delta > 0 else cause_out))
    book_moves(conn, moves, chart=chart or load_chart())
    return {m.customer_id: m.amount_fen for m in moves}


def apply_credit_after_close(ctx: CloseContext, written: Sequence[WrittenInvoice]) -> None:
    """After-write step of the close: apply each customer's credit to their new invoice."""
    apply_credit(ctx.conn, written)


def apply_credit(conn: psycopg.Connection, written: Sequence[WrittenInvoice], *,
                 chart: Chart | None = None) -> dict[str, int]:
    """Apply the credit each customer held before `written` (their new invoices) to them;
    return invoice number → credit applied. A customer's credit is first settled to what
    their balance before the invoice says."""
    by_customer = {w.customer_id: w for w in written}
    numbers = number_range(written)
    if numbers is not None and len(by_customer) == len(written):  # a close's invoices
        concerned = [r[0] for r in conn.execute(
            _CONCERNED_BY_RANGE, {"first": numbers[0], "last": numbers[1]})]
    else:
        found = balances(conn, by_customer)
        concerned = [c for c, (b, held) in found.items() if b - by_customer[c].total_fen < 0
                     or held != 0]
    if not concerned:
        return {}
    lock_customers(conn, concerned)
    moves, applied = [], {}
    for c, (balance, held) in sorted(balances(conn, concerned).items()):
        w = by_customer[c]
        before = max(0, -(balance - w.total_fen))
        if before != held:
            moves.append(CreditMove(c, w.issued_on, before - held,
                                    "overpayment" if before > held else "correction"))
        use = min(before, w.total_fen) if w.total_fen > 0 else 0
        if use > 0:
            moves.append(CreditMove(c, w.issued_on, -use, "applied", w.invoice_number))
            applied[w.invoice_number] = use
    book_moves(conn, moves, chart=chart or load_chart())
    return applied


def _describe(m: CreditMove) -> str:
    km = format_km(abs(m.amount_fen))
    if m.cause == "applied":
        return f"Avans kupca {m.customer_id} primijenjen na račun {m.invoice_number}"
    if m.cause == "refund":
        return f"Povrat preplate kupcu {m.customer_id} ({km} KM) {m.about}".strip()
    if m.amount_fen > 0:
        return f"Preplata kupca {m.customer_id} prenesena na avanse ({km} KM)"
    return f"Smanjenje avansa kupca {m.customer_id} ({km} KM) {m.about}".strip()
