"""The general ledger on a real PostgreSQL: the close and payments book entries in their own
transaction; numbers without gaps; immutability; balance checked once per entry (migration
0022: lines first, then the entry row); reports."""

from __future__ import annotations

import csv
import io
from datetime import date
from typing import Any

import psycopg
import psycopg.sql
import pytest

from billing.closer import close_period
from billing.ledger import EntryDraft, LedgerError, LineDraft, load_chart
from billing.ledger_posting import post_entries, post_missing
from billing.ledger_reports import (
    CSV_FIELDS,
    entry_messages,
    export_csv,
    general_ledger,
    trial_balance,
)
from billing.payments import record_payments
from schemas.contracts import LEDGER, validate
from tests.integration.test_close import MARCH_READS, push, seed

CHART = load_chart()
APRIL_1 = date(2026, 4, 1)


@pytest.fixture
def conn(db_url: str):
    with psycopg.connect(db_url) as c:
        seed(c)
        push(c, MARCH_READS)  # figures without estimates (billing.estimation, see test_close)
        close_period(c, "2026-03", issued_on=APRIL_1, line_sources=[])
        c.commit()
        yield c


def pay(payment_id: str, amount: str, paid_on: str = "2026-04-10", **extra: Any) -> dict[str, Any]:
    return {"payment_id": payment_id, "paid_on": paid_on, "amount": amount, **extra}


def entry_lines(conn: psycopg.Connection, number: str) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT account, customer_id, debit_fen, credit_fen FROM journal_lines"
        " WHERE entry_number = %s ORDER BY line_no", (number,)).fetchall()


def balances(conn: psycopg.Connection, as_of: date) -> dict[str, int]:
    return {r.account: r.balance_fen for r in trial_balance(conn, as_of).rows}


def test_close_books_one_entry_per_invoice(conn: psycopg.Connection) -> None:
    entries = conn.execute(
        "SELECT entry_number, entry_date, kind, source_document, description"
        " FROM journal_entries ORDER BY seq").fetchall()
    assert entries == [
        (f"2026-00000{i}", APRIL_1, "invoice", f"2026-00000{i}", f"Račun 2026-00000{i}")
        for i in (1, 2, 3)]
    # 100001: electricity 44.80, water 15.85, waste 9.00, VAT 11.84 = 81.49
    assert entry_lines(conn, "2026-000001") == [
        ("2110", "100001", 8149, 0), ("6010", None, 0, 4480), ("6011", None, 0, 1585),
        ("6012", None, 0, 900), ("4700", None, 0, 1184)]
    assert entry_lines(conn, "2026-000003") == [
        ("2110", "200001", 2501, 0), ("6012", None, 0, 2138), ("4700", None, 0, 363)]
    assert conn.execute("SELECT last_seq FROM journal_counters").fetchall() == [(3,)]
    # closing again books nothing
    close_period(conn, "2026-03", issued_on=date(2026, 4, 2))
    conn.commit()
    assert conn.execute("SELECT count(*) FROM journal_entries").fetchone() == (3,)


def test_trial_balance_and_payments(conn: psycopg.Connection) -> None:
    assert balances(conn, date(2026, 3, 31)) == {}
    tb = trial_balance(conn, APRIL_1)
    assert tb.debit_fen == tb.credit_fen == 11112
    assert balances(conn, APRIL_1) == {
        "2110": 11112, "4700": -1614, "6010": -(4480 + 395), "6011": -1585,
        "6012": -(900 + 2138)}
    assert [r.name for r in tb.rows][0] == "Kupci u zemlji – potraživanja"
    with conn.transaction():
        out = record_payments(conn, [pay("UPL-1", "81.49", reference="2600000126"),
                                     pay("UPL-2", "10.00", customer_id="100002"),
                                     pay("UPL-2", "10.00", customer_id="100002")],
                              channel="bank")
        record_payments(conn, [pay("BL-1", "4.00", "2026-04-11", customer_id="200001")],
                        channel="cash_desk")
    assert [o.status for o in out] == ["accepted", "accepted", "duplicate"]
    numbers = conn.execute("SELECT entry_number, source_document FROM journal_entries"
                           " WHERE kind = 'payment' ORDER BY seq").fetchall()
    # 2026-000006 moves 100002's overpayment (5.38 KM) to customer credit 4310 (#5)
    assert numbers == [("2026-000004", "UPL-1"), ("2026-000005", "UPL-2"),
                       ("2026-000007", "BL-1")]
    assert entry_lines(conn, "2026-000004") == [("2410", None, 8149, 0),
                                                ("2110", "100001", 0, 8149)]
    assert entry_lines(conn, "2026-000006") == [("2110", "100002", 538, 0),
                                                ("4310", "100002", 0, 538)]
    assert entry_lines(conn, "2026-000007") == [("2430", None, 400, 0),
                                                ("2110", "200001", 0, 400)]
    tb = trial_balance(conn, date(2026, 4, 30))
    assert tb.debit_fen == tb.credit_fen == 11112 + 8149 + 1000 + 400 + 538  # + credit move
    assert balances(conn, date(2026, 4, 30))["2110"] == 11112 - 8149 - 1000 - 400 + 538
    assert balances(conn, date(2026, 4, 10))["2410"] == 9149
    assert "2430" not in balances(conn, date(2026, 4, 10))
    # receivables per customer in the ledger = the billing balance; a surplus is credit (4310)
    per_customer: dict[str, int] = dict(conn.execute(
        "SELECT customer_id, sum(debit_fen - credit_fen) FROM journal_lines"
        " WHERE account = '2110' GROUP BY 1").fetchall())
    assert per_customer == {"100001": 0, "100002": 0, "200001": 2501 - 400}


def test_general_ledger_of_receivables(conn: psycopg.Connection) -> None:
    with conn.transaction():
        record_payments(conn, [pay("UPL-1", "50.00", "2026-04-10", customer_id="100001"),
                               pay("UPL-9", "1.00", "2026-05-02", customer_id="100001")],
                        channel="bank")
    gl = general_ledger(conn, "2110", date(2026, 4, 2), date(2026, 4, 30))
    assert (gl.name, gl.opening_fen) == ("Kupci u zemlji – potraživanja", 11112)
    assert [(ln.entry_number, ln.source_document, ln.debit_fen, ln.credit_fen, ln.balance_fen)
            for ln in gl.lines] == [("2026-000004", "UPL-1", 0, 5000, 6112)]
    assert gl.closing_fen == 6112
    full = general_ledger(conn, "2110", APRIL_1, date(2026, 5, 31))
    assert [ln.balance_fen for ln in full.lines] == [8149, 8611, 11112, 6112, 6012]
    with pytest.raises(LedgerError, match="before first day"):
        general_ledger(conn, "2110", APRIL_1, date(2026, 3, 1))
    with pytest.raises(LedgerError, match="'9999'"):
        general_ledger(conn, "9999", APRIL_1, APRIL_1)


def test_export_csv_and_messages(conn: psycopg.Connection) -> None:
    with conn.transaction():
        record_payments(conn, [pay("=cmd|' /C calc'!A0", "1.00", customer_id="100001")],
                        channel="bank")
    rows = list(csv.DictReader(io.StringIO(export_csv(conn, "2026-04"))))
    assert tuple(rows[0]) == CSV_FIELDS
    assert len(rows) == 5 + 3 + 3 + 2
    assert rows[0] == {"entry_no": "2026-000001", "entry_date": "2026-04-01",
                       "source_type": "invoice", "source_id": "2026-000001",
                       "description": "Račun 2026-000001", "line_no": "1", "account": "2110",
                       "debit": "81.49", "credit": "0.00", "customer_id": "100001"}
    assert rows[-1]["source_id"].startswith("'=cmd")  # not a spreadsheet formula
    assert export_csv(conn, "2026-03").count("\n") == 1  # header only
    assert export_csv(conn, "2026") == export_csv(conn, "2026-04")
    with pytest.raises(LedgerError, match="period: must be YYYY or YYYY-MM"):
        export_csv(conn, "2026-13")
    messages = entry_messages(conn, "2026-04")
    assert [m["entry_no"] for m in messages] == [f"2026-00000{i}" for i in range(1, 5)]
    for m in messages:
        validate(LEDGER, m)
    assert messages[2]["lines"][1] == {"account": "6012", "debit": "0.00", "credit": "21.38"}


def test_posted_entries_are_immutable(conn: psycopg.Connection) -> None:
    for statement in ("UPDATE journal_lines SET debit_fen = 1 WHERE line_no = 1",
                      "DELETE FROM journal_lines", "DELETE FROM journal_entries",
                      "UPDATE journal_entries SET entry_date = '2026-04-02'",
                      "TRUNCATE journal_lines, journal_entries CASCADE"):
        with pytest.raises(psycopg.errors.IntegrityConstraintViolation, match="immutable"):
            conn.execute(statement)
        conn.rollback()
    assert conn.execute("SELECT count(*) FROM journal_lines").fetchone() == (11,)


def _raw_lines(conn: psycopg.Connection, number: str, lines: list[tuple[str, int, int]],
               first_no: int = 1) -> None:
    for no, (account, debit, credit) in enumerate(lines, start=first_no):
        conn.execute("INSERT INTO journal_lines (entry_number, line_no, account, debit_fen,"
                     " credit_fen) VALUES (%s, %s, %s, %s, %s)",
                     (number, no, account, debit, credit))


def _raw_entry(conn: psycopg.Connection, seq: int, lines: list[tuple[str, int, int]]) -> None:
    """An entry in raw SQL, one statement per line: the lines first, then the entry row."""
    _raw_lines(conn, f"2026-{seq:06d}", lines)
    conn.execute("INSERT INTO journal_entries (entry_number, year, seq, entry_date, kind,"
                 " source_document) VALUES (%s, 2026, %s, '2026-04-05', 'adjustment', %s)",
                 (f"2026-{seq:06d}", seq, f"ADJ-{seq}"))


def _refused(conn: psycopg.Connection, match: str, *, at_commit: bool = False,
             sql: str | psycopg.sql.Composed | None = None) -> psycopg.Error:
    """The statement (or the commit) fails with an integrity-constraint violation (SQLSTATE
    class 23) whose message matches; the transaction is rolled back."""
    with pytest.raises(psycopg.errors.IntegrityError, match=match) as caught:
        if sql is not None:
            conn.execute(sql)
        if at_commit:
            conn.commit()
    conn.rollback()
    assert caught.value.sqlstate is not None and caught.value.sqlstate.startswith("23")
    return caught.value


def test_balance_is_checked_once_per_entry(conn: psycopg.Connection) -> None:
    # lines one statement at a time (unbalanced in between), then the entry: accepted
    _raw_entry(conn, 4, [("2110", 100, 0), ("6010", 0, 60), ("4700", 0, 40)])
    conn.commit()
    # unbalanced: refused when the entry row is written, not only at commit
    with pytest.raises(psycopg.errors.IntegrityConstraintViolation,
                       match="2026-000005 does not balance: debits 100 ≠ credits 99"):
        _raw_entry(conn, 5, [("2110", 100, 0), ("6010", 0, 99)])
    conn.rollback()
    # a single line, or none: refused
    with pytest.raises(psycopg.errors.IntegrityConstraintViolation, match="1 lines"):
        _raw_entry(conn, 5, [("2110", 100, 0)])
    conn.rollback()
    with pytest.raises(psycopg.errors.IntegrityConstraintViolation, match="0 lines"):
        _raw_entry(conn, 5, [])
    conn.rollback()
    # several entries in one statement: the unbalanced one is named
    _raw_lines(conn, "2026-000005", [("2110", 7, 0), ("6010", 0, 7)])
    _raw_lines(conn, "2026-000006", [("2110", 7, 0), ("6010", 0, 6)])
    _refused(conn, "2026-000006 does not balance", sql=(
        "INSERT INTO journal_entries (entry_number, year, seq, entry_date, kind, source_document)"
        " VALUES ('2026-000005', 2026, 5, '2026-04-05', 'adjustment', 'A-5'),"
        " ('2026-000006', 2026, 6, '2026-04-05', 'adjustment', 'A-6')"))
    # a line added later to a posted entry (even a balanced pair): refused at once
    _refused(conn, "entry 2026-000001 is posted", sql=(
        "INSERT INTO journal_lines (entry_number, line_no, account, debit_fen, credit_fen)"
        " VALUES ('2026-000001', 6, '6010', 5, 0), ('2026-000001', 7, '6010', 0, 5)"))
    # ... also to an entry posted earlier in the same transaction
    _raw_entry(conn, 5, [("2110", 100, 0), ("6010", 0, 100)])
    _refused(conn, "entry 2026-000005 is posted", sql=(
        "INSERT INTO journal_lines (entry_number, line_no, account, debit_fen, credit_fen)"
        " VALUES ('2026-000005', 3, '6010', 1, 0)"))
    # lines whose entry never comes: refused at commit, also when the entry row was written
    # in a savepoint that was rolled back
    _raw_lines(conn, "2026-000009", [("2110", 100, 0), ("6010", 0, 100)])
    err = _refused(conn, "lines of entry 2026-000009 have no entry", at_commit=True)
    assert isinstance(err, psycopg.errors.ForeignKeyViolation)
    _raw_lines(conn, "2026-000009", [("2110", 100, 0), ("6010", 0, 100)])
    with pytest.raises(RuntimeError), conn.transaction():
        _raw_entry(conn, 9, [])
        raise RuntimeError("rolled back")
    _refused(conn, "lines of entry 2026-000009 have no entry", at_commit=True)
    # the check's pending rows: nobody else changes them, none outlives its transaction
    _raw_lines(conn, "2026-000009", [("2110", 100, 0), ("6010", 0, 100)])
    for statement in ("DELETE FROM journal_pending_lines", "TRUNCATE journal_pending_lines",
                      "UPDATE journal_pending_lines SET entry_numbers = '{}'"):
        with pytest.raises((psycopg.errors.IntegrityConstraintViolation,
                            psycopg.errors.ObjectInUse)), conn.transaction():
            conn.execute(statement)  # TRUNCATE: PostgreSQL refuses (pending trigger events)
    _refused(conn, "lines of entry 2026-000009 have no entry", at_commit=True)
    assert conn.execute("SELECT count(*) FROM journal_pending_lines").fetchone() == (0,)
    _refused(conn, "kept by", sql="TRUNCATE journal_pending_lines")
    # an entry cannot pose as another transaction's
    _raw_lines(conn, "2026-000005", [("2110", 100, 0), ("6010", 0, 100)])
    _refused(conn, "posted_xact must be", sql=(
        "INSERT INTO journal_entries (entry_number, year, seq, entry_date, kind, source_document,"
        " posted_xact) VALUES ('2026-000005', 2026, 5, '2026-04-05', 'adjustment', 'A-5', '7')"))
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("INSERT INTO journal_lines (entry_number, line_no, account, debit_fen,"
                     " credit_fen) VALUES ('2026-000005', 7, '6010', 5, 5)")
    conn.rollback()
    assert conn.execute("SELECT count(*), sum(debit_fen) - sum(credit_fen) FROM journal_lines"
                        ).fetchone() == (11 + 3, 0)
    assert conn.execute("SELECT count(*) FROM journal_entries").fetchone() == (4,)


def test_lines_name_known_accounts_and_customers(conn: psycopg.Connection) -> None:
    # checked per statement (migration 0022), with the foreign keys' SQLSTATE
    for line, name in [(("9999", None), "account 9999 is not in the chart"),
                       (("2110", "nobody"), "customer nobody does not exist")]:
        err = _refused(conn, name, sql=psycopg.sql.SQL(
            "INSERT INTO journal_lines (entry_number, line_no, account, customer_id, debit_fen,"
            " credit_fen) VALUES ('2026-000004', 1, {}, {}, 1, 0)").format(*line))
        assert isinstance(err, psycopg.errors.ForeignKeyViolation)
    # what journal lines name cannot be removed or renamed (a customer and an account that
    # nothing else names)
    conn.execute("INSERT INTO customers (customer_id, name, kind)"
                 " VALUES ('900001', 'K', 'household')")
    conn.execute("INSERT INTO ledger_accounts VALUES ('9000', 'Probni', 'asset')")
    conn.execute("INSERT INTO journal_lines (entry_number, line_no, account, customer_id,"
                 " debit_fen, credit_fen) VALUES ('2026-000004', 1, '9000', '900001', 5, 0),"
                 " ('2026-000004', 2, '2110', NULL, 0, 5)")
    conn.execute("INSERT INTO journal_entries (entry_number, year, seq, entry_date, kind,"
                 " source_document) VALUES ('2026-000004', 2026, 4, '2026-04-05', 'opening', 'O')")
    conn.commit()
    for statement in ("DELETE FROM customers WHERE customer_id = '900001'",
                      "UPDATE customers SET customer_id = '900002' WHERE customer_id = '900001'",
                      "DELETE FROM ledger_accounts WHERE account = '9000'",
                      "UPDATE ledger_accounts SET account = '9001' WHERE account = '9000'",
                      "TRUNCATE ledger_accounts", "TRUNCATE customers CASCADE"):
        _refused(conn, "journal lines", sql=statement)
    # what they do not name can change
    conn.execute("UPDATE customers SET name = 'Novo ime' WHERE customer_id = '100001'")
    conn.execute("INSERT INTO ledger_accounts VALUES ('9999', 'Probni 2', 'asset')")
    conn.execute("UPDATE ledger_accounts SET account = '9998' WHERE account = '9999'")
    conn.execute("DELETE FROM ledger_accounts WHERE account = '9998'")
    conn.commit()


def test_a_line_cannot_join_an_entry_another_transaction_posts(
        conn: psycopg.Connection, db_url: str) -> None:
    # T1 writes lines for 2026-000004 while T2 posts an entry of that number: T1's lines
    # pass their own check (T2's entry is not visible yet), but they are T1's lines and
    # can only belong to an entry T1 posts, so T1's commit is refused.
    _raw_lines(conn, "2026-000004", [("2110", 0, 3), ("6010", 3, 0)], first_no=8)
    with psycopg.connect(db_url) as other:
        _raw_entry(other, 4, [("2110", 100, 0), ("6010", 0, 100)])
        other.commit()
    _refused(conn, "lines of entry 2026-000004 have no entry", at_commit=True)
    assert conn.execute("SELECT count(*), sum(debit_fen) - sum(credit_fen) FROM journal_lines"
                        " WHERE entry_number = '2026-000004'").fetchone() == (2, 0)


def _adjustment(source: str, day: date, amount: int = 100) -> EntryDraft:
    return EntryDraft("adjustment", source, day, "Ispravka",
                      (LineDraft("2190", amount, 0), LineDraft("2110", 0, amount, "100001")))


def test_numbers_have_no_gaps_and_documents_book_once(conn: psycopg.Connection) -> None:
    with conn.transaction():
        assert post_entries(conn, [_adjustment("A-1", APRIL_1)], chart=CHART) == ["2026-000004"]
    with pytest.raises(RuntimeError), conn.transaction():
        post_entries(conn, [_adjustment("A-2", APRIL_1)], chart=CHART)
        raise RuntimeError("rolled back")
    with conn.transaction():  # the rolled-back number is given again; years count apart
        assert post_entries(conn, [
            _adjustment("A-2", APRIL_1), _adjustment("A-1", APRIL_1),
            _adjustment("A-3", date(2027, 1, 2)), _adjustment("A-3", date(2027, 1, 2)),
            _adjustment("A-4", date(2026, 12, 31)),
        ], chart=CHART) == ["2026-000005", None, "2027-000001", None, "2026-000006"]
    assert conn.execute("SELECT year, last_seq FROM journal_counters ORDER BY 1"
                        ).fetchall() == [(2026, 6), (2027, 1)]
    bad = EntryDraft("adjustment", "A-5", APRIL_1, "",
                     (LineDraft("2190", 100, 0), LineDraft("2110", 0, 90)))
    with pytest.raises(LedgerError, match="debits 100 ≠ credits 90"):
        post_entries(conn, [_adjustment("A-6", APRIL_1), bad], chart=CHART)
    assert conn.execute("SELECT count(*) FROM journal_entries WHERE source_document = 'A-6'"
                        ).fetchone() == (0,)


def test_copy_text_survives_tabs_newlines_and_backslashes(conn: psycopg.Connection) -> None:
    # the journal's COPY rows are formatted by hand: every special character is escaped
    odd = "A\\B\tC\nD\rE \\N"
    entry = EntryDraft("adjustment", odd, APRIL_1, f"Opis {odd}",
                       (LineDraft("2190", 100, 0), LineDraft("2110", 0, 100, "100001")))
    with conn.transaction():
        [number] = post_entries(conn, [entry], chart=CHART)
    assert conn.execute("SELECT source_document, description FROM journal_entries"
                        " WHERE entry_number = %s", (number,)).fetchone() == (odd, f"Opis {odd}")
    assert entry_lines(conn, str(number)) == [("2190", None, 100, 0), ("2110", "100001", 0, 100)]


def test_post_missing_books_documents_from_before_the_ledger(conn: psycopg.Connection) -> None:
    with conn.transaction():
        # 4.00 of 4.62 KM: an overpayment would add a credit move, which is not a document (#5)
        record_payments(conn, [pay("UPL-1", "4.00", customer_id="100002")], channel="posta")
    before = conn.execute("SELECT kind, source_document, entry_date FROM journal_entries"
                          " ORDER BY seq").fetchall()
    lines_before = conn.execute("SELECT account, customer_id, debit_fen, credit_fen"
                                " FROM journal_lines ORDER BY entry_number, line_no").fetchall()
    with conn.transaction():  # a database whose documents predate the ledger
        conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute("DELETE FROM journal_lines")
        conn.execute("DELETE FROM journal_entries")
        conn.execute("DELETE FROM journal_counters")
    assert post_missing(conn, chart=CHART) == (3, 1)
    conn.commit()
    assert conn.execute("SELECT kind, source_document, entry_date FROM journal_entries"
                        " ORDER BY seq").fetchall() == before
    assert conn.execute("SELECT account, customer_id, debit_fen, credit_fen FROM journal_lines"
                        " ORDER BY entry_number, line_no").fetchall() == lines_before
    assert post_missing(conn, chart=CHART) == (0, 0)
