"""Scenario, clock pinned: a household pays late and too little, gets both reminders, is
disconnected, sued, agrees to instalments, pays them, is reconnected with the fee and the
case closes as settled. Every step is checked in the journal and the aging report; the
operator calls go through the HTTP API with the operator token.

Customer 100001, March invoice 81.49 KM issued 1 April, due 16 April (all figures by hand,
interest 0.03 % a day on the open principal):
  26 Apr  pays 20.00 → 61.49 open; interest to 26 Apr = 8149 × 0.0003 × 10 = 24.447
  1 May   reminder      interest to date 24.447 + 6149 × 0.0003 × 5  = 33.67 → 0.34 charged
  16 May  warning       24.447 + 6149 × 0.0003 × 20 = 61.34 → 0.61, charged 0.27
  31 May  disconnection 24.447 + 6149 × 0.0003 × 35 = 89.01 → 0.89, charged 0.28
  15 Jul  legal case    24.447 + 6149 × 0.0003 × 80 = 172.02 → 1.72, charged 0.83
  20 Jul  court fee 30.00 → owes 61.49 + 1.72 + 30.00 = 93.21
  12 Aug  plan 46.61 (1 Sep) + 46.60 (1 Oct), paid on 30 Aug and 30 Sep
  1 Oct   plan completed, account cleared; 2 Oct reconnected at the meter (65.00, paid 5 Oct)
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg_pool import ConnectionPool
from pydantic import SecretStr

from api.main import create_app
from api.security import hash_password
from app.settings import Settings
from billing.closer import close_period
from billing.payments import record_payments
from tests.integration.test_close import MARCH_READS, push, seed

AUTH = {"Authorization": "Bearer op-secret"}
CUSTOMER = "100001"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 4, 1, 10, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def day(self, text: str) -> None:
        self.now = datetime.fromisoformat(f"{text}T10:00:00+00:00")


@pytest.fixture
def world(db_url: str):
    with psycopg.connect(db_url, autocommit=True) as conn:
        seed(conn)
        push(conn, MARCH_READS)
        with conn.transaction():
            close_period(conn, "2026-03", issued_on=date(2026, 4, 1))
        conn.execute("UPDATE customers SET password_hash = %s WHERE customer_id = %s",
                     (hash_password("tajna-lozinka"), CUSTOMER))
    clock = Clock()
    settings = Settings().model_copy(update={"operator_token": SecretStr("op-secret")})
    with ConnectionPool(db_url, min_size=1, max_size=4, open=True) as pool:
        app = create_app(settings, pool, clock=clock)
        with TestClient(app, base_url="https://testserver") as client, \
                psycopg.connect(db_url, autocommit=True) as conn:
            yield client, clock, conn


def pay(conn: psycopg.Connection, pid: str, on: str, amount: str) -> None:
    with conn.transaction():
        [out] = record_payments(conn, [{"payment_id": pid, "customer_id": CUSTOMER,
                                        "paid_on": on, "amount": amount}], channel="bank")
    assert out.status == "accepted", out


def run(client: TestClient, clock: Clock, on: str) -> dict[str, Any]:
    clock.day(on)
    resp = client.post("/api/v1/collections/run", json={}, headers=AUTH)
    assert resp.status_code == 200, resp.text
    return resp.json()


def mine(client: TestClient, as_of: str) -> dict[str, Any] | None:
    resp = client.get("/api/v1/collections/aging", params={"as_of": as_of}, headers=AUTH)
    assert resp.status_code == 200, resp.text
    return next((c for c in resp.json()["customers"] if c["customer_id"] == CUSTOMER), None)


def ledger_balance(conn: psycopg.Connection, as_of: str) -> int:
    row = conn.execute(
        """SELECT coalesce(sum(l.debit_fen - l.credit_fen), 0) FROM journal_lines l
           JOIN journal_entries e USING (entry_number)
           WHERE l.account = '2110' AND l.customer_id = %s AND e.entry_date <= %s""",
        (CUSTOMER, as_of)).fetchone()
    assert row is not None
    return int(row[0])


def fen(km: str) -> int:
    return round(float(km) * 100)  # test-side only: compare KM strings from the API


def test_debtor_to_court_and_back(world) -> None:
    client, clock, conn = world
    assert client.post("/api/v1/collections/run", json={}).status_code == 401
    pay(conn, "P-LATE", "2026-04-26", "20.00")
    assert run(client, clock, "2026-04-30")["steps"] == {}

    expected = [("2026-05-01", "reminder", 34), ("2026-05-16", "warning", 27),
                ("2026-05-31", "disconnection", 28)]
    for on, step, interest in expected:
        report = run(client, clock, on)
        assert report["steps"].get(step), report
        [row] = client.get("/api/v1/collections/steps", params={
            "customer_id": CUSTOMER, "since": on}, headers=AUTH).json()
        assert (row["step"], row["overdue"], row["interest"]) == (step, "61.49",
                                                                 f"0.{interest:02d}")
        pdf = client.get(f"/api/v1/collections/letters/{row['letter_ref']}.pdf", headers=AUTH)
        assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    aging = mine(client, "2026-05-31")
    assert aging is not None and aging["buckets"]["31-60"] == "61.49"  # 45 days past due
    assert fen(aging["total"]) == ledger_balance(conn, "2026-05-31") == 6149 + 89

    orders = conn.execute("SELECT meter_id FROM disconnection_orders WHERE customer_id = %s"
                          " ORDER BY meter_id", (CUSTOMER,)).fetchall()
    assert orders == [("E1",), ("W1",)]
    clock.day("2026-06-02")
    assert client.post("/api/v1/collections/disconnected", json={"customer_id": CUSTOMER},
                       headers=AUTH).json() == {"orders_done": 2}

    report = run(client, clock, "2026-07-15")
    assert report["cases_opened"] >= 1
    [case] = client.get("/api/v1/collections/cases", params={"customer_id": CUSTOMER},
                        headers=AUTH).json()
    assert (case["state"], case["principal"], case["interest"]) == ("filed", "61.49", "1.72")
    clock.day("2026-07-20")
    cost = client.post(f"/api/v1/collections/cases/{case['case_id']}/costs",
                       json={"kind": "court_fee", "amount": "30.00"}, headers=AUTH)
    assert cost.status_code == 200, cost.text
    aging = mine(client, "2026-07-31")
    # invoice (106 days) + 1 May interest (91 days); 16 and 31 May interest (76, 61 days);
    # 15 July interest and the 20 July court fee
    assert aging is not None and aging["buckets"] == {
        "not_due": "0.00", "0-30": "30.83", "31-60": "0.00", "61-90": "0.55",
        "91-180": "61.83", "181-365": "0.00", "over_365": "0.00"}
    assert fen(aging["total"]) == ledger_balance(conn, "2026-07-31") == 9321

    clock.day("2026-08-10")
    judged = client.post(f"/api/v1/collections/cases/{case['case_id']}/state", headers=AUTH,
                         json={"state": "judgment", "case_number": "96 0 Mal 012345 26 Mal"})
    assert judged.json()["case_number"] == "96 0 Mal 012345 26 Mal"
    clock.day("2026-08-12")
    plan = client.post("/api/v1/collections/plans", headers=AUTH, json={
        "customer_id": CUSTOMER, "instalments": [
            {"due_on": "2026-09-01", "amount": "46.61"},
            {"due_on": "2026-10-01", "amount": "46.60"}]})
    assert plan.json()["total"] == "93.21"
    assert run(client, clock, "2026-08-20")["steps"] == {}  # suspended
    pay(conn, "P-RATE-1", "2026-08-30", "46.61")
    assert run(client, clock, "2026-09-10")["plans"] == {}
    pay(conn, "P-RATE-2", "2026-09-30", "46.60")
    report = run(client, clock, "2026-10-01")
    assert report["plans"] == {"completed": 1} and report["steps"].get("cleared") == 1
    assert mine(client, "2026-10-01") is None and ledger_balance(conn, "2026-10-01") == 0

    clock.day("2026-10-02")
    fee = client.post("/api/v1/collections/reconnect", headers=AUTH,
                      json={"customer_id": CUSTOMER, "where": "meter"}).json()
    assert fee["fee"] == "65.00"
    assert conn.execute("SELECT account, debit_fen, credit_fen FROM journal_lines WHERE"
                        " entry_number = %s ORDER BY line_no", (fee["entry_number"],)
                        ).fetchall() == [("2110", 6500, 0), ("6710", 0, 5556), ("4700", 0, 944)]
    owed = mine(client, "2026-10-02")
    assert owed is not None and owed["buckets"]["not_due"] == "65.00"
    pay(conn, "P-FEE", "2026-10-05", "65.00")
    clock.day("2026-10-05")
    closed = client.post(f"/api/v1/collections/cases/{case['case_id']}/state", headers=AUTH,
                         json={"state": "settled", "note": "reprogram ispunjen"}).json()
    assert closed["state"] == "settled" and closed["costs"] == "30.00"
    assert mine(client, "2026-10-05") is None and ledger_balance(conn, "2026-10-05") == 0

    journal = conn.execute(
        """SELECT e.entry_date, e.kind, split_part(e.source_document, '-', 1),
                  sum(l.debit_fen - l.credit_fen)
           FROM journal_entries e JOIN journal_lines l USING (entry_number)
           WHERE l.account = '2110' AND l.customer_id = %s
           GROUP BY e.entry_number ORDER BY e.entry_number""", (CUSTOMER,)).fetchall()
    assert [(str(d), k, s, int(a)) for d, k, s, a in journal] == [
        ("2026-04-01", "invoice", "2026", 8149), ("2026-04-26", "payment", "P", -2000),
        ("2026-05-01", "adjustment", "KAM", 34), ("2026-05-16", "adjustment", "KAM", 27),
        ("2026-05-31", "adjustment", "KAM", 28), ("2026-07-15", "adjustment", "KAM", 83),
        ("2026-07-20", "adjustment", "TRS", 3000), ("2026-08-30", "payment", "P", -4661),
        ("2026-09-30", "payment", "P", -4660), ("2026-10-02", "adjustment", "PRK", 6500),
        ("2026-10-05", "payment", "P", -6500)]
    steps = [r[0] for r in conn.execute("SELECT step FROM collection_steps WHERE customer_id"
                                        " = %s ORDER BY step_on, step_id", (CUSTOMER,))]
    assert steps == ["reminder", "warning", "disconnection", "disconnected", "legal",
                     "plan_agreed", "plan_completed", "cleared", "reconnection"]

    # the portal shows the interest: charged 1.72; accrual went on until paid (not charged)
    assert client.post("/api/v1/portal/login", json={
        "customer_id": CUSTOMER, "password": "tajna-lozinka"}).status_code == 200
    statement = client.get("/api/v1/portal/interest").json()
    assert statement["charged"] == "1.72"
    assert fen(statement["accrued"]) > 172
