"""Credit notes (storno) and corrected invoices on a real PostgreSQL."""

from __future__ import annotations

from datetime import date
from typing import Any

import psycopg
import pytest

from billing import BillingError
from billing.accounts import CREDITED, PAID, account_balance_fen, invoice_states
from billing.closer import close_period
from billing.credit_notes import issue_credit_note, reissue_invoice
from billing.payments import balance_fen, record_payments
from tests.integration.test_close import MARCH_READS, push, seed

APRIL_1 = date(2026, 4, 1)
APRIL_5 = date(2026, 4, 5)


@pytest.fixture
def conn(db_url: str):
    with psycopg.connect(db_url) as c:
        seed(c)
        push(c, MARCH_READS)
        close_period(c, "2026-03", issued_on=APRIL_1)
        c.commit()
        yield c


def credit(conn: psycopg.Connection, invoice: str, on: date = APRIL_5) -> str:
    number = issue_credit_note(conn, invoice, issued_on=on, reason="pogrešno očitanje",
                               operator="clerk1")
    conn.commit()
    return number


def rows(conn: psycopg.Connection, query: str, *args: Any) -> list[tuple[Any, ...]]:
    return conn.execute(query, args).fetchall()


def receivable(conn: psycopg.Connection, customer: str) -> int:
    row = conn.execute("SELECT coalesce(sum(debit_fen - credit_fen), 0) FROM journal_lines"
                       " WHERE account = '2110' AND customer_id = %s", (customer,)).fetchone()
    return int(row[0]) if row else 0


def test_credit_note_mirrors_the_invoice_and_reverses_its_entry(conn: psycopg.Connection
                                                                 ) -> None:
    assert account_balance_fen(conn, "100001") == 8149
    assert credit(conn, "2026-000001") == "CN-2026-000001"
    head = rows(conn, "SELECT invoice_number, customer_id, period, issued_on, net_fen, vat_fen,"
                      " total_fen, reason, operator FROM credit_notes")
    assert head == [("2026-000001", "100001", "2026-03", APRIL_5, 6965, 1184, 8149,
                     "pogrešno očitanje", "clerk1")]
    cols = ("line_no, service, metering_point_id, component, register, description,"
            " quantity_milli, unit, unit_price_micro, amount_fen, vat_rate")
    assert rows(conn, f"SELECT {cols} FROM credit_note_lines ORDER BY line_no") == rows(
        conn, f"SELECT {cols} FROM invoice_lines WHERE invoice_number = '2026-000001'"
              " ORDER BY line_no")
    assert rows(conn, "SELECT vat_rate, base_fen, vat_fen FROM credit_note_vat") == rows(
        conn, "SELECT vat_rate, base_fen, vat_fen FROM invoice_vat"
              " WHERE invoice_number = '2026-000001'")
    storno = rows(conn, "SELECT entry_number, entry_date, kind, source_document FROM"
                        " journal_entries WHERE kind = 'reversal'")
    assert storno == [("2026-000004", APRIL_5, "reversal", "2026-000001")]
    assert rows(conn, "SELECT account, customer_id, debit_fen, credit_fen FROM journal_lines"
                      " WHERE entry_number = '2026-000004' ORDER BY line_no") == [
        ("2110", "100001", 0, 8149), ("6010", None, 4480, 0), ("6011", None, 1585, 0),
        ("6012", None, 900, 0), ("4700", None, 1184, 0)]
    assert account_balance_fen(conn, "100001") == balance_fen(conn, "100001") == 0
    assert receivable(conn, "100001") == 0
    # the next credit note continues the series; credit notes never change
    assert credit(conn, "2026-000003") == "CN-2026-000002"
    with pytest.raises(psycopg.errors.IntegrityConstraintViolation, match="immutable"):
        conn.execute("UPDATE credit_notes SET reason = 'x'")
    conn.rollback()
    with pytest.raises(psycopg.errors.IntegrityConstraintViolation, match="immutable"):
        conn.execute("DELETE FROM credit_note_lines")
    conn.rollback()


def test_an_invoice_is_credited_once_and_bad_input_is_named(conn: psycopg.Connection) -> None:
    credit(conn, "2026-000002")
    with pytest.raises(BillingError, match="invoice_number: 2026-000002 is already credited"
                                          " by CN-2026-000001"):
        credit(conn, "2026-000002")
    conn.rollback()
    with pytest.raises(BillingError, match="invoice_number: unknown invoice"):
        credit(conn, "2026-999999")
    conn.rollback()
    with pytest.raises(BillingError, match="issued_on: 2026-03-31 is before"):
        credit(conn, "2026-000001", date(2026, 3, 31))
    conn.rollback()
    for reason, operator, field in (("  ", "clerk", "reason"), ("x", "", "operator")):
        with pytest.raises(BillingError, match=f"^{field}:"):
            issue_credit_note(conn, "2026-000001", issued_on=APRIL_5, reason=reason,
                              operator=operator)
        conn.rollback()
    # nothing was written by the refusals: the counter did not move
    assert rows(conn, "SELECT year, last_seq FROM credit_note_counters") == [(2026, 1)]
    assert rows(conn, "SELECT count(*) FROM journal_entries WHERE kind = 'reversal'") == [(1,)]


def test_reissue_only_after_a_credit_note(conn: psycopg.Connection) -> None:
    with pytest.raises(BillingError, match="is not credited; issue a credit note first"):
        reissue_invoice(conn, "100001", "2026-03", issued_on=APRIL_5)
    conn.rollback()
    with pytest.raises(BillingError, match="has no invoice for 2026-02"):
        reissue_invoice(conn, "100001", "2026-02", issued_on=APRIL_5)
    conn.rollback()
    record_payments(conn, [{"payment_id": "P1", "paid_on": "2026-04-03", "amount": "50.00",
                            "customer_id": "100001"}], channel="bank")
    credit(conn, "2026-000001")
    # a clerk fixes the data: the water contract starts later, so less water is invoiced
    conn.execute("UPDATE contracts SET valid_from = '2026-03-16' WHERE contract_id = 'C1W'")
    number = reissue_invoice(conn, "100001", "2026-03", issued_on=APRIL_5)
    conn.commit()
    assert number == "2026-000004"
    new = rows(conn, "SELECT customer_id, period, total_fen FROM invoices"
                     " WHERE invoice_number = %s", number)[0]
    assert new[:2] == ("100001", "2026-03") and 0 < new[2] < 8149
    assert account_balance_fen(conn, "100001") == new[2] - 5000 == receivable(conn, "100001")
    states = {s.number: s for s in invoice_states(conn, "100001", APRIL_5)}
    assert states["2026-000001"].status == CREDITED
    assert states[number].covered_fen == 5000 and states[number].status != PAID
    # the close leaves the corrected customer alone; a second correction needs a credit note
    assert close_period(conn, "2026-03", issued_on=APRIL_5).invoices_created == 0
    with pytest.raises(BillingError, match="is not credited"):
        reissue_invoice(conn, "100001", "2026-03", issued_on=APRIL_5)
    conn.rollback()
    credit(conn, number)
    assert reissue_invoice(conn, "100001", "2026-03", issued_on=APRIL_5) == "2026-000005"
    conn.commit()


def test_the_database_refuses_a_second_uncredited_invoice(conn: psycopg.Connection) -> None:
    conn.execute(
        """INSERT INTO invoices (invoice_number, year, seq, customer_id, period, issued_on,
                                 due_on, net_fen, vat_fen, total_fen, payment_reference)
           VALUES ('2026-000099', 2026, 99, '100001', '2026-03', '2026-04-05', '2026-04-20',
                   0, 0, 0, 'x-99')""")
    with pytest.raises(psycopg.errors.UniqueViolation, match="not credited"):
        conn.commit()


def test_a_credited_invoice_is_no_debt_for_aging_and_collections(
    conn: psycopg.Connection,
) -> None:
    from billing.aging import aging_report

    before = aging_report(conn, date(2026, 6, 30), "100001")
    assert before.rows and before.rows[0].total_fen == 8149
    credit(conn, "2026-000001")
    after = aging_report(conn, date(2026, 6, 30), "100001")
    assert [r.total_fen for r in after.rows] == []
    # before the credit note's date the invoice was still owed
    assert aging_report(conn, date(2026, 4, 1), "100001").rows[0].total_fen == 8149
