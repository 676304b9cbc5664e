"""A statement's payments booked set-based (`post_payment_ids`) give exactly the journal of
the one-by-one booking (`post_payments`): same numbers, lines, descriptions and events."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

import psycopg
import pytest

import billing.payments as payments_module
from billing.closer import close_period
from billing.ledger import load_chart
from billing.ledger_posting import post_payment_ids
from billing.payments import record_payments
from billing.reference import make_payment_reference
from tests.integration.test_close import MARCH_READS, push, seed

REF_1 = make_payment_reference(2026, 1)


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_url) as c:
        seed(c)
        push(c, MARCH_READS)
        close_period(c, "2026-03", issued_on=date(2026, 4, 1), line_sources=[])
        c.commit()
        yield c


def statement() -> list[dict[str, Any]]:
    """Payments across a year end, by reference and by code, a repeated id, unmatched ones."""
    out: list[dict[str, Any]] = []
    for i in range(60):
        day = "2026-12-31" if i % 3 else "2027-01-02"
        if i % 4 == 0:
            out.append({"payment_id": f"B-{i}", "paid_on": day, "amount": f"{i + 1}.05",
                        "reference": REF_1})
        elif i % 4 == 1:
            out.append({"payment_id": f"B-{i}", "paid_on": day, "amount": "2.50",
                        "customer_id": "200001"})
        elif i % 4 == 2:
            out.append({"payment_id": f"B-{i}", "paid_on": day, "amount": "1.00",
                        "customer_id": "999999"})  # unknown: queued, not booked
        else:
            out.append({"payment_id": f"B-{i - 2}", "paid_on": day, "amount": "3.00",
                        "customer_id": "100002"})  # an id already in the statement
    return out


def journal(conn: psycopg.Connection) -> tuple[list[Any], list[Any], list[Any], list[Any]]:
    """The ledger's invoice and payment entries, their lines and events, the counters.
    (Customer-credit entries are left out: their ids come from a sequence, which a
    rollback does not give back.)"""
    mine = "SELECT entry_number FROM journal_entries WHERE kind IN ('invoice', 'payment')"
    entries = conn.execute(
        "SELECT entry_number, year, seq, entry_date, kind, source_document, description"
        f" FROM journal_entries WHERE entry_number IN ({mine}) ORDER BY entry_number").fetchall()
    lines = conn.execute(
        "SELECT entry_number, line_no, account, customer_id, debit_fen, credit_fen"
        f" FROM journal_lines WHERE entry_number IN ({mine})"
        " ORDER BY entry_number, line_no").fetchall()
    events = conn.execute(
        "SELECT topic, key, document FROM outbox_events"
        f" WHERE topic <> 'ledger.entries.v1' OR document IN ({mine})"
        " ORDER BY event_id").fetchall()
    counters = conn.execute("SELECT * FROM journal_counters ORDER BY year").fetchall()
    return entries, lines, events, counters


def record_and_read(conn: psycopg.Connection) -> tuple[list[Any], ...]:
    conn.execute("SELECT 1")  # an open transaction: the block below is a savepoint in it
    with conn.transaction():
        outcomes = record_payments(conn, statement(), channel="bank")
    return ([(o.status, o.customer_id, o.invoice_number) for o in outcomes], *journal(conn))


def test_set_based_booking_equals_the_one_by_one_booking(
        conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    conn.autocommit = False
    monkeypatch.setattr(payments_module, "BOOK_IN_SQL_FROM", 10**9)  # one by one
    one_by_one = record_and_read(conn)
    conn.rollback()
    monkeypatch.setattr(payments_module, "BOOK_IN_SQL_FROM", 1)  # set-based
    set_based = record_and_read(conn)
    conn.commit()  # the ledger's checks at COMMIT accept it
    assert set_based == one_by_one
    outcomes, entries, lines, events, _ = set_based
    paid = [e for e in entries if e[4] == "payment"]
    assert sum(o[0] == "accepted" for o in outcomes) == len(paid) == 30
    assert len([ln for ln in lines if ln[0] in {e[0] for e in paid}]) == 60
    assert {e[1] for e in paid} == {2026, 2027}  # numbered in the year of payment
    assert all(e[1] == e[3].year for e in paid)
    assert "Uplata B-0 za račun 2026-000001" in [e[6] for e in paid]
    ledger_events = [k for t, k, _ in events if t == "ledger.entries.v1"]
    by_number = {e[0]: e[5] for e in paid}
    in_events = [by_number[k] for k in ledger_events if k in by_number]
    assert in_events == sorted(in_events, key=lambda p: int(p.split("-")[1]))  # file order


def test_booking_again_books_nothing(conn: psycopg.Connection) -> None:
    with conn.transaction():
        record_payments(conn, statement(), channel="bank")
    ids = [(r[0], None) for r in conn.execute("SELECT payment_id FROM payments")]
    with conn.transaction():
        assert post_payment_ids(conn, ids, channel="bank", chart=load_chart()) == 0
    conn.commit()
