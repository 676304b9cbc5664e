"""Collections on a real PostgreSQL: the daily run, interest charged on letters, payment in
full, payment plans, legal costs and write-off, reconnection, aging = ledger receivables."""

from __future__ import annotations

from datetime import date
from typing import Any

import psycopg
import pytest

from billing import BillingError
from billing.aging import aging_report
from billing.closer import close_period
from billing.collections_run import (
    create_plan,
    mark_disconnected,
    reconnect,
    run_collections,
)
from billing.ledger_reports import trial_balance
from billing.legal import add_cost, change_state, list_cases
from billing.letters import body_lines, letter_pdf, load_letter
from billing.payments import record_payments
from tests.integration.test_close import MARCH_READS, push, seed

D = date


@pytest.fixture
def conn(db_url: str):
    with psycopg.connect(db_url, autocommit=True) as c:
        seed(c)
        push(c, MARCH_READS)
        with c.transaction():
            close_period(c, "2026-03", issued_on=D(2026, 4, 1))  # due 16 April
        yield c


def pay(conn: psycopg.Connection, pid: str, customer: str, on: str, amount: str) -> None:
    with conn.transaction():
        out = record_payments(conn, [{"payment_id": pid, "customer_id": customer,
                                      "paid_on": on, "amount": amount}], channel="bank")
    assert out[0].status == "accepted", out


def stage(conn: psycopg.Connection, customer: str) -> tuple[Any, ...]:
    row = conn.execute("SELECT stage, stage_on, disconnected FROM collection_accounts"
                       " WHERE customer_id = %s", (customer,)).fetchone()
    assert row is not None
    return tuple(row)


def receivables(conn: psycopg.Connection, on: date) -> int:
    return next(r.balance_fen for r in trial_balance(conn, on).rows if r.account == "2110")


def test_run_takes_one_step_charges_interest_and_reruns_change_nothing(conn) -> None:
    totals = dict(conn.execute("SELECT customer_id, total_fen FROM invoices").fetchall())
    assert totals["100001"] == 8149 and totals["200001"] == 2501
    assert run_collections(conn, D(2026, 4, 30)).steps == {}  # 14 days: too early
    report = run_collections(conn, D(2026, 5, 1))  # 15 days overdue
    big = sum(t >= 1000 for t in totals.values())  # the reminder needs 10.00 KM
    assert report.steps == {"reminder": big}
    # 100001: 8149 × 0.0003 × 15 = 36.67 → 37 ; 200001: 2501 × 0.0045 = 11.25 → 11
    charged = dict(conn.execute("SELECT customer_id, amount_fen FROM customer_charges"
                                " WHERE kind = 'interest'").fetchall())
    assert charged["100001"] == 37 and charged["200001"] == 11
    ref = conn.execute("SELECT letter_ref FROM collection_steps WHERE customer_id = '100001'"
                       ).fetchone()[0]
    lines = conn.execute(
        """SELECT l.account, l.customer_id, l.debit_fen, l.credit_fen FROM journal_lines l
           JOIN journal_entries e USING (entry_number) WHERE e.source_document = %s
           ORDER BY line_no""", (f"KAM-{ref}",)).fetchall()
    assert lines == [("2110", "100001", 37, 0), ("6700", None, 0, 37)]
    again = run_collections(conn, D(2026, 5, 1))
    assert again.steps == {} and again.interest_charged_fen == 0
    assert run_collections(conn, D(2026, 5, 15)).steps == {}  # 29 days: no warning yet
    assert run_collections(conn, D(2026, 5, 16)).steps == {"warning": 2}  # 20.00 KM
    # the warning charges only the interest accrued since the reminder: 30 days → 73 − 37
    assert conn.execute("SELECT interest_fen FROM collection_steps WHERE customer_id ="
                        " '100001' AND step = 'warning'").fetchone() == (36,)
    letter = load_letter(conn, ref)
    text = "\n".join(body_lines(letter))
    assert "81.49" in text and "0.37" in text and "2026-000001" in text
    assert letter_pdf(conn, ref).startswith(b"%PDF")
    warning = conn.execute("SELECT letter_ref FROM collection_steps WHERE customer_id ="
                           " '100001' AND step = 'warning'").fetchone()[0]
    warned = "\n".join(body_lines(load_letter(conn, warning)))
    assert "(65.00 KM na brojilu, 130.00 KM na stubu)" in warned and "0.36" in warned
    with pytest.raises(BillingError, match="letter_ref"):
        load_letter(conn, "OPM-2026-999999")


def test_payment_in_full_clears_and_aging_equals_the_ledger(conn) -> None:
    run_collections(conn, D(2026, 5, 1))
    pay(conn, "P1", "100001", "2026-05-05", "81.86")  # invoice + 0.37 interest
    report = run_collections(conn, D(2026, 5, 6))
    assert report.steps.get("cleared") == 1
    assert stage(conn, "100001") == ("current", D(2026, 5, 6), False)
    aging = aging_report(conn, D(2026, 5, 6))
    by = {r.customer_id: r for r in aging.rows}
    assert "100001" not in by
    assert by["200001"].buckets["0-30"] == 2501 + 11
    assert aging.total_fen - aging.credit_fen == receivables(conn, D(2026, 5, 6))
    assert sum(aging.totals.values()) == aging.total_fen


def test_plan_suspends_and_a_missed_instalment_resumes(conn) -> None:
    run_collections(conn, D(2026, 5, 1))
    create_plan(conn, "100001", D(2026, 5, 10), [(D(2026, 5, 20), 4000), (D(2026, 6, 20), 4186)])
    with pytest.raises(BillingError, match="already has an active plan"):
        create_plan(conn, "100001", D(2026, 5, 10), [(D(2026, 5, 20), 1)])
    assert run_collections(conn, D(2026, 5, 16)).steps == {"warning": 1}  # 200001 only
    assert conn.execute("SELECT count(*) FROM collection_steps WHERE customer_id = '100001'"
                        " AND step = 'warning'").fetchone() == (0,)
    assert stage(conn, "100001")[0] == "reminder"  # suspended, not moved
    pay(conn, "P1", "100001", "2026-05-20", "40.00")
    assert run_collections(conn, D(2026, 6, 25)).plans == {}  # grace: 5 days
    report = run_collections(conn, D(2026, 6, 26))
    assert report.plans == {"breached": 1}
    assert stage(conn, "100001")[0] == "warning"  # the ladder goes on


def test_legal_costs_write_off_and_reconnection(conn) -> None:
    for day in (D(2026, 5, 1), D(2026, 5, 16), D(2026, 5, 31), D(2026, 7, 15)):
        run_collections(conn, day)
    orders = conn.execute("SELECT metering_point_id, meter_id, service FROM disconnection_orders"
                          " WHERE customer_id = '100001' ORDER BY service").fetchall()
    assert orders == [("MP1", "E1", "electricity"), ("MP1", "W1", "water")]
    with pytest.raises(BillingError, match="not disconnected"):
        reconnect(conn, "100001", "meter", D(2026, 6, 2))
    assert mark_disconnected(conn, "100001", D(2026, 6, 2)) == 2
    [case] = list_cases(conn, customer_id="100001")
    assert (case.state, case.principal_fen, case.filed_on) == ("filed", 8149, D(2026, 7, 15))
    assert list_cases(conn, customer_id="200001") == []  # 25.01 KM: below the 50.00 KM step
    with pytest.raises(BillingError, match="filed → enforcement is not allowed"):
        change_state(conn, case.case_id, "enforcement", D(2026, 7, 20))
    add_cost(conn, case.case_id, "court_fee", 5000, D(2026, 7, 20))
    before = receivables(conn, D(2026, 7, 31))
    closed = change_state(conn, case.case_id, "written_off", D(2026, 7, 31))
    assert closed.state == "written_off" and closed.costs_fen == 5000
    written = conn.execute("SELECT amount_fen FROM customer_charges WHERE kind = 'write_off'"
                           ).fetchone()[0]
    interest = conn.execute("SELECT sum(amount_fen) FROM customer_charges WHERE customer_id ="
                            " '100001' AND kind = 'interest'").fetchone()[0]
    assert interest == 220  # 8149 × 0.0003 × 90 days = 220.02, charged over four steps
    assert -written == 8149 + interest + 5000
    assert receivables(conn, D(2026, 7, 31)) == before + written
    assert list_cases(conn, state="open", customer_id="100001") == []
    assert aging_report(conn, D(2026, 7, 31), "100001").rows == []
    number = reconnect(conn, "100001", "pole", D(2026, 8, 1))
    assert conn.execute("SELECT account, debit_fen, credit_fen FROM journal_lines WHERE"
                        " entry_number = %s ORDER BY line_no", (number,)).fetchall() == [
        ("2110", 13000, 0), ("6710", 0, 11111), ("4700", 0, 1889)]
    assert stage(conn, "100001") == ("current", D(2026, 7, 31), False)
