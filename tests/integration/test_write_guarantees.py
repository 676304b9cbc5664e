"""The guarantees migration 0026 moved from constraints to statement-level checks (issue #5,
speed) still hold on a real PostgreSQL: raw SQL that breaks one fails with its SQLSTATE."""

from __future__ import annotations

from datetime import date

import psycopg
import pytest

from billing.closer import close_period
from billing.credit_notes import issue_credit_note, reissue_invoice
from tests.integration.test_close import MARCH_READS, push, seed

APRIL_1 = date(2026, 4, 1)
APRIL_5 = date(2026, 4, 5)

_LINE = ("INSERT INTO invoice_lines (invoice_number, line_no, service, component,"
         " description, quantity_milli, unit, unit_price_micro, amount_fen, vat_rate) VALUES ")
_INVOICE = ("INSERT INTO invoices (invoice_number, year, seq, customer_id, period, issued_on,"
            " due_on, net_fen, vat_fen, total_fen, payment_reference) VALUES ")


@pytest.fixture
def conn(db_url: str):
    with psycopg.connect(db_url) as c:
        seed(c)
        push(c, MARCH_READS)
        close_period(c, "2026-03", issued_on=APRIL_1)
        c.commit()
        yield c


def _invoice(number: str, seq: int, customer: str = "100001", period: str = "2026-03") -> str:
    return (f"('{number}', 2026, {seq}, '{customer}', '{period}', '2026-04-05', '2026-04-20',"
            f" 100, 17, 117, 'ref-{seq}')")


def _line(number: str, no: int) -> str:
    return f"('{number}', {no}, 'water', 'fee', 'x', 1000, 'kom', 1000000, 100, 17)"


def _count(conn: psycopg.Connection, query: str) -> int:
    row = conn.execute(query).fetchone()
    return int(row[0]) if row else -1


def test_a_line_or_vat_row_without_its_invoice_is_refused(conn: psycopg.Connection) -> None:
    lines = _count(conn, "SELECT count(*) FROM invoice_lines")
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="2026-999999 does not exist"):
        conn.execute(_LINE + _line("2026-999999", 1))
    conn.rollback()
    # one bad row refuses the whole statement, good rows included
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="2026-999999"):
        conn.execute(_LINE + _line("2026-000001", 90) + ", " + _line("2026-999999", 1))
    conn.rollback()
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="invoice_vat: invoice 2026-9"):
        conn.execute("INSERT INTO invoice_vat VALUES ('2026-999999', 17, 100, 17)")
    conn.rollback()
    with (pytest.raises(psycopg.errors.ForeignKeyViolation),  # COPY goes through it too
          conn.cursor() as cur, cur.copy("COPY invoice_vat FROM STDIN") as copy):
        copy.write("2026-000001\t0.00\t1\t0\n2026-999998\t17.00\t100\t17\n")
    conn.rollback()
    assert _count(conn, "SELECT count(*) FROM invoice_lines") == lines
    assert _count(conn, "SELECT count(*) FROM invoice_vat WHERE vat_rate = 0") == 0


def test_rows_of_an_invoice_written_before_them_are_accepted(conn: psycopg.Connection) -> None:
    conn.execute(_INVOICE + _invoice("2026-000050", 50, customer="100002", period="2026-02"))
    conn.execute(_LINE + _line("2026-000050", 1) + ", " + _line("2026-000050", 2))
    conn.execute("INSERT INTO invoice_vat VALUES ('2026-000050', 17, 100, 17)")
    conn.commit()
    assert _count(conn, "SELECT count(*) FROM invoice_lines WHERE invoice_number = '2026-000050'"
                  ) == 2
    # a line whose invoice would come in a later statement is refused at once, as by the key
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        conn.execute(_LINE + _line("2026-000051", 1))
    conn.rollback()


def test_an_invoice_names_an_existing_customer(conn: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="999999"):
        conn.execute(_INVOICE + _invoice("2026-000040", 40, customer="100002", period="2026-01")
                     + ", " + _invoice("2026-000041", 41, customer="999999"))
    conn.rollback()
    assert _count(conn, "SELECT count(*) FROM invoices WHERE seq IN (40, 41)") == 0


def test_a_customer_named_by_invoices_cannot_be_removed(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:  # no journal lines: only invoices name them
        conn.execute("INSERT INTO customers (customer_id, name, kind) VALUES"
                     " ('900001', 'Samo račun', 'household'), ('900002', 'Bez računa',"
                     " 'household')")
        conn.execute(_INVOICE + _invoice("2026-000001", 1, customer="900001"))
        conn.commit()
        for statement in ("DELETE FROM customers WHERE customer_id = '900001'",
                          "UPDATE customers SET customer_id = '900003'"
                          " WHERE customer_id = '900001'"):
            with pytest.raises(psycopg.errors.ForeignKeyViolation, match="invoices"):
                conn.execute(statement)
            conn.rollback()
        with pytest.raises(psycopg.errors.IntegrityConstraintViolation, match="immutable"):
            conn.execute("TRUNCATE customers CASCADE")  # it would truncate the invoices
        conn.rollback()
        # a customer without invoices is still free to go, and the others to change
        conn.execute("DELETE FROM customers WHERE customer_id = '900002'")
        conn.execute("UPDATE customers SET name = 'Samo jedan račun' WHERE customer_id = '900001'")
        conn.commit()
        assert _count(conn, "SELECT count(*) FROM customers WHERE customer_id LIKE '9000%'") == 1


def test_invoices_and_their_rows_cannot_be_truncated(conn: psycopg.Connection) -> None:
    for table in ("invoice_lines", "invoice_vat", "invoices CASCADE"):
        with pytest.raises(psycopg.errors.IntegrityConstraintViolation, match="immutable"):
            conn.execute(f"TRUNCATE {table}")
        conn.rollback()
    assert _count(conn, "SELECT count(*) FROM invoice_lines") > 0


def test_two_open_invoices_of_one_period_are_refused_at_commit(conn: psycopg.Connection
                                                               ) -> None:
    # both in one statement (the close's COPY)
    conn.execute(_INVOICE + _invoice("2026-000060", 60, customer="100002", period="2026-01")
                 + ", " + _invoice("2026-000061", 61, customer="100002", period="2026-01"))
    with pytest.raises(psycopg.errors.UniqueViolation,
                       match="customer 100002 has 2 invoices for period 2026-01"):
        conn.commit()
    # a second one next to a committed one, in a later statement
    conn.execute(_INVOICE + _invoice("2026-000062", 62, customer="100002", period="2026-01"))
    conn.commit()
    conn.execute(_INVOICE + _invoice("2026-000063", 63, customer="100002", period="2026-02"))
    conn.execute(_INVOICE + _invoice("2026-000064", 64, customer="100002", period="2026-01"))
    with pytest.raises(psycopg.errors.UniqueViolation, match="period 2026-01"):
        conn.commit()
    assert _count(conn, "SELECT count(*) FROM invoices WHERE seq BETWEEN 60 AND 64") == 1
    assert _count(conn, "SELECT count(*) FROM invoices_pending_periods") == 0


def test_a_credited_invoice_may_be_replaced_in_one_transaction(conn: psycopg.Connection
                                                               ) -> None:
    issue_credit_note(conn, "2026-000001", issued_on=APRIL_5, reason="pogrešno očitanje",
                      operator="clerk1")
    number = reissue_invoice(conn, "100001", "2026-03", issued_on=APRIL_5)
    conn.commit()
    # the replacement written first, its predecessor credited after it, same transaction
    conn.execute(_INVOICE + _invoice("2026-000070", 70, customer="100001", period="2026-03"))
    issue_credit_note(conn, number, issued_on=APRIL_5, reason="opet", operator="clerk1")
    conn.commit()
    assert _count(conn, "SELECT count(*) FROM invoices WHERE customer_id = '100001'"
                        " AND period = '2026-03'") == 3
    assert _count(conn, "SELECT count(*) FROM invoices_pending_periods") == 0


def test_the_pending_checks_cannot_be_removed_by_hand(conn: psycopg.Connection) -> None:
    for statement in ("DELETE FROM invoices_pending_periods",
                      "UPDATE invoices_pending_periods SET periods = '{}'"):
        conn.execute(_INVOICE + _invoice("2026-000080", 80, customer="100002",
                                         period="2026-01"))
        with pytest.raises(psycopg.errors.IntegrityConstraintViolation, match="kept by"):
            conn.execute(statement)
        conn.rollback()
    with pytest.raises(psycopg.errors.IntegrityConstraintViolation, match="kept by"):
        conn.execute("TRUNCATE invoices_pending_periods")
    conn.rollback()


def test_a_journal_number_is_still_one_per_year_and_sequence(conn: psycopg.Connection) -> None:
    # UNIQUE (year, seq) is gone: the primary key and the number's CHECK say the same
    seq = _count(conn, "SELECT min(seq) FROM journal_entries WHERE year = 2026")
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("INSERT INTO journal_entries (entry_number, year, seq, entry_date, kind,"
                     " source_document) VALUES ('2026-X', 2026, %s, '2026-04-01', 'adjustment',"
                     " 'x')", (seq,))
    conn.rollback()
    with pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute("INSERT INTO journal_entries (entry_number, year, seq, entry_date, kind,"
                     " source_document) VALUES (%s, 2026, %s, '2026-04-01', 'adjustment',"
                     " 'x')", (f"2026-{seq:06d}", seq))
    conn.rollback()


# Queries that read invoices by customer (billing.accounts, billing.credit_notes, the portal):
# the dropped invoices_customer_period index was (customer_id, period, kind); the portal index
# must answer each of them.
_BY_CUSTOMER = [
    "SELECT coalesce(sum(total_fen), 0) FROM invoices WHERE customer_id = '100001'",
    "SELECT DISTINCT period FROM invoices WHERE customer_id = '100001'"
    " ORDER BY period DESC LIMIT 12",
    "SELECT max(period) FROM invoices WHERE customer_id = '100001'",
    "SELECT count(*) FROM invoices i WHERE customer_id = '100001' AND period = '2026-03'"
    " AND kind = 'invoice' AND NOT EXISTS (SELECT 1 FROM credit_notes c"
    " WHERE c.invoice_number = i.invoice_number)",
    "SELECT i.invoice_number FROM invoices i WHERE i.customer_id = '100001'"
    " AND i.period = ANY('{2026-03,2026-02}') ORDER BY i.period",
]


@pytest.mark.parametrize("query", _BY_CUSTOMER)
def test_invoices_of_a_customer_are_found_by_an_index(conn: psycopg.Connection, query: str
                                                      ) -> None:
    conn.execute("ANALYZE invoices")
    conn.execute("SET enable_seqscan = off")  # a handful of rows: force the choice of index
    plan = "\n".join(str(r[0]) for r in conn.execute("EXPLAIN " + query))
    assert "invoices_customer_portal" in plan, plan
    assert "Seq Scan on invoices" not in plan, plan
