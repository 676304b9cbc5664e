"""Customer credit (4310) on a real PostgreSQL: an overpayment becomes credit at once, the
next close applies it to the new invoice (recorded with the invoice, booked 4310 →
receivables), partly when the invoice is larger; a credit note's surplus is settled too."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import psycopg
import pytest

from billing import customer_credit
from billing.accounts import invoice_states
from billing.close_hooks import WrittenInvoice, number_range
from billing.closer import close_period
from billing.credit_notes import issue_credit_note
from billing.customer_credit import credit_applied_fen, open_credit_fen
from billing.payments import balance_fen, record_payments
from tests.integration.test_close import seed

# 200001 (business, waste per m²) is invoiced 25.01 KM every month without any reads.
MAY_1 = date(2026, 5, 1)


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_url) as c:
        seed(c)
        close_period(c, "2026-03", issued_on=date(2026, 4, 1))
        c.commit()
        yield c


def pay(conn: psycopg.Connection, pid: str, amount: str, customer: str = "200001") -> None:
    with conn.transaction():
        [out] = record_payments(conn, [{"payment_id": pid, "paid_on": "2026-04-10",
                                        "amount": amount, "customer_id": customer}],
                                channel="bank")
    assert out.status == "accepted", out


def ledger(conn: psycopg.Connection, customer: str) -> tuple[int, int]:
    """(receivables 2110 debit balance, customer credit 4310 credit balance)."""
    row = conn.execute(
        "SELECT coalesce(sum(debit_fen - credit_fen) FILTER (WHERE account = '2110'), 0),"
        " coalesce(sum(credit_fen - debit_fen) FILTER (WHERE account = '4310'), 0)"
        " FROM journal_lines WHERE customer_id = %s", (customer,)).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def april_invoice(conn: psycopg.Connection, customer: str = "200001") -> tuple[str, int]:
    row = conn.execute("SELECT invoice_number, total_fen FROM invoices WHERE customer_id = %s"
                       " AND period = '2026-04'", (customer,)).fetchone()
    assert row is not None
    return str(row[0]), int(row[1])


def test_overpayment_is_applied_to_the_next_invoice(conn: psycopg.Connection) -> None:
    pay(conn, "P1", "100.00")
    assert ledger(conn, "200001") == (0, 10000 - 2501)
    assert open_credit_fen(conn, "200001") == 7499
    close_period(conn, "2026-04", issued_on=MAY_1)
    conn.commit()
    number, total = april_invoice(conn)
    assert total == 2501
    assert credit_applied_fen(conn, number) == 2501
    assert ledger(conn, "200001") == (0, 7499 - 2501)
    assert balance_fen(conn, "200001") == -(7499 - 2501)
    move = conn.execute(
        "SELECT m.moved_on, m.cause, m.amount_fen, l.account, l.debit_fen, l.credit_fen"
        " FROM customer_credit_moves m JOIN journal_lines l USING (entry_number)"
        " WHERE m.invoice_number = %s ORDER BY l.line_no", (number,)).fetchall()
    assert move == [(MAY_1, "applied", -2501, "4310", 2501, 0),
                    (MAY_1, "applied", -2501, "2110", 0, 2501)]
    states = {s.number: s for s in invoice_states(conn, "200001", MAY_1)}
    assert (states[number].covered_fen, states[number].status) == (2501, "paid")
    # closing again applies nothing twice
    assert close_period(conn, "2026-04", issued_on=MAY_1).invoices_created == 0
    assert credit_applied_fen(conn, number) == 2501
    assert open_credit_fen(conn, "200001") == 4998


def test_credit_smaller_than_the_invoice_is_used_up(conn: psycopg.Connection) -> None:
    pay(conn, "P1", "35.01")  # 10.00 KM beyond March's 25.01 KM
    assert ledger(conn, "200001") == (0, 1000)
    close_period(conn, "2026-04", issued_on=MAY_1)
    conn.commit()
    number, total = april_invoice(conn)
    assert credit_applied_fen(conn, number) == 1000  # to pay: 15.01 KM
    assert ledger(conn, "200001") == (total - 1000, 0)
    assert open_credit_fen(conn, "200001") == 0
    # a customer without credit gets nothing applied and no credit moves
    other, _ = april_invoice(conn, "100001")
    assert credit_applied_fen(conn, other) == 0
    assert conn.execute("SELECT count(*) FROM customer_credit_moves WHERE customer_id"
                        " = '100001'").fetchone() == (0,)


def test_surplus_of_a_credit_note_is_settled_by_the_close(conn: psycopg.Connection) -> None:
    pay(conn, "P1", "25.01")
    march = conn.execute("SELECT invoice_number FROM invoices WHERE customer_id = '200001'"
                         ).fetchone()
    assert march is not None
    issue_credit_note(conn, march[0], issued_on=date(2026, 4, 20), reason="pogrešna površina",
                      operator="test")
    conn.commit()
    assert ledger(conn, "200001") == (-2501, 0)  # not settled yet: the next step does it
    close_period(conn, "2026-04", issued_on=MAY_1)
    conn.commit()
    number, _ = april_invoice(conn)
    assert credit_applied_fen(conn, number) == 2501
    assert ledger(conn, "200001") == (0, 0)
    causes = conn.execute("SELECT cause, amount_fen FROM customer_credit_moves"
                          " ORDER BY move_id").fetchall()
    assert causes == [("overpayment", 2501), ("applied", -2501)]


def test_invoice_pdf_asks_for_the_total_less_the_credit(conn: psycopg.Connection) -> None:
    import io

    from pypdf import PdfReader

    from billing.invoice_pdf import load_invoice, render_invoice_pdf
    from tests.integration.test_invoice_pdf import UTILITY

    pay(conn, "P1", "35.01")  # 10.00 KM of credit
    close_period(conn, "2026-04", issued_on=MAY_1)
    conn.commit()
    number, total = april_invoice(conn)
    inv = load_invoice(conn, number)
    assert inv is not None and inv["credit_applied_fen"] == 1000
    pdf = render_invoice_pdf(inv, utility=UTILITY)
    text = "\n".join(p.extract_text() or "" for p in PdfReader(io.BytesIO(pdf)).pages)
    to_pay = f"{(total - 1000) // 100},{(total - 1000) % 100:02d}"
    assert "UKUPNO RAČUN" in text and "Umanjeno za preplatu" in text and "−10,00" in text
    assert f"Iznos KM\n{to_pay}" in text or f"Iznos KM {to_pay}" in text, text


def test_customers_concerned_by_a_close_are_the_same_by_range_as_by_list(
        conn: psycopg.Connection) -> None:
    """The close finds the customers whose credit its invoices concern in SQL, by the
    invoices' number range; the list path (any other set of invoices) finds the same."""
    pay(conn, "P1", "100.00")  # 200001 overpays: credit held
    issue_credit_note(conn, april_or_march(conn, "100001"), issued_on=date(2026, 4, 20),
                      reason="test", operator="op")
    conn.commit()
    conn.execute("SELECT 1")  # an outer transaction: the close applies nothing it keeps
    close_period(conn, "2026-04", issued_on=MAY_1, after_write=[])
    rows = conn.execute("SELECT invoice_number, customer_id, period, issued_on, due_on,"
                        " net_fen, vat_fen, total_fen FROM invoices WHERE period = '2026-04'"
                        " ORDER BY invoice_number").fetchall()
    written = [WrittenInvoice(*r) for r in rows]
    numbers = number_range(written)
    assert numbers is not None and len(written) >= 3
    by_range = sorted(r[0] for r in conn.execute(
        customer_credit._CONCERNED_BY_RANGE, {"first": numbers[0], "last": numbers[1]}))
    found = customer_credit.balances(conn, [w.customer_id for w in written])
    by_list = sorted(w.customer_id for w in written
                     if found[w.customer_id][0] - w.total_fen < 0 or found[w.customer_id][1])
    assert by_range == by_list and "200001" in by_range
    conn.rollback()


def april_or_march(conn: psycopg.Connection, customer: str) -> str:
    row = conn.execute("SELECT invoice_number FROM invoices WHERE customer_id = %s"
                       " ORDER BY invoice_number DESC LIMIT 1", (customer,)).fetchone()
    assert row is not None
    return str(row[0])
