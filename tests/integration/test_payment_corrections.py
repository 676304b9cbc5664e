"""Payment reversals and refunds on a real PostgreSQL: new rows and reversing entries, never
edits; allocations released; re-match or back to the unmatched queue; credit refunded."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime

import orjson
import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg_pool import ConnectionPool
from pydantic import SecretStr

from api.main import create_app
from api.operators import create_operator
from app.settings import Settings
from billing import BillingError
from billing.accounts import invoice_states
from billing.bank_import import resolve_unmatched
from billing.closer import close_period
from billing.ledger import load_chart
from billing.ledger_posting import post_missing
from billing.outbox import build_payloads
from billing.payment_corrections import refund_credit, reverse_payment
from billing.payments import balance_fen, record_payments
from schemas.contracts import PAYMENTS, validate
from stream.outbox_publisher import OutboxPublisher
from tests.integration.test_close import MARCH_READS, push, seed

# March close (test_close.py): 100001 owes 81.49 KM, 100002 4.62 KM, 200001 25.01 KM.
APRIL_1, APRIL_10, APRIL_20 = date(2026, 4, 1), date(2026, 4, 10), date(2026, 4, 20)


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_url) as c:
        seed(c)
        push(c, MARCH_READS)
        close_period(c, "2026-03", issued_on=APRIL_1)
        c.commit()
        yield c


def pay(conn: psycopg.Connection, pid: str, amount: str, customer: str) -> None:
    with conn.transaction():
        [out] = record_payments(conn, [{"payment_id": pid, "paid_on": "2026-04-10",
                                        "amount": amount, "customer_id": customer}],
                                channel="bank")
    assert out.status == "accepted", out


def account(conn: psycopg.Connection, account: str, customer: str | None = None) -> int:
    """Debit − credit of an account (of one customer if given), in feninga."""
    row = conn.execute(
        "SELECT coalesce(sum(debit_fen - credit_fen), 0) FROM journal_lines WHERE account = %s"
        " AND (%s::text IS NULL OR customer_id = %s)", (account, customer, customer)).fetchone()
    assert row is not None
    return int(row[0])


def balanced(conn: psycopg.Connection) -> bool:
    return conn.execute("SELECT entry_number FROM journal_lines GROUP BY 1"
                        " HAVING sum(debit_fen) <> sum(credit_fen)").fetchall() == []


def test_overpayment_becomes_credit_and_reversal_rematches(conn: psycopg.Connection) -> None:
    pay(conn, "P1", "100.00", "100001")  # meant for 200001
    assert balance_fen(conn, "100001") == 8149 - 10000
    assert account(conn, "2110", "100001") == 0  # nothing owed …
    assert account(conn, "4310", "100001") == -1851  # … and 18.51 KM owed to the customer
    r = reverse_payment(conn, "P1", reason="uplata kupca 200001", on=APRIL_20,
                        operator="bojan", rematch_to="200001")
    conn.commit()
    assert (r.reversal_id, r.rematched_id, r.queued_id) == ("STORNO/P1", "PREKNJ/P1", None)
    rows = conn.execute("SELECT payment_id, customer_id, paid_on, amount_fen, kind, reverses"
                        " FROM payments ORDER BY payment_id").fetchall()
    assert rows == [("P1", "100001", APRIL_10, 10000, "payment", None),
                    ("PREKNJ/P1", "200001", APRIL_10, 10000, "payment", None),
                    ("STORNO/P1", "100001", APRIL_20, -10000, "reversal", "P1")]
    # 100001: back to owing the invoice, no credit, the invoice no longer covered
    assert balance_fen(conn, "100001") == 8149
    assert (account(conn, "2110", "100001"), account(conn, "4310", "100001")) == (8149, 0)
    [state] = invoice_states(conn, "100001", APRIL_20)
    assert (state.covered_fen, state.status) == (0, "overdue")
    # 200001: paid 25.01 KM, holds 74.99 KM credit
    assert balance_fen(conn, "200001") == 2501 - 10000
    assert (account(conn, "2110", "200001"), account(conn, "4310", "200001")) == (0, -7499)
    # the reversing entry swaps the payment's lines, dated on the reversal day
    storno = conn.execute(
        "SELECT e.entry_date, e.source_document, p.entry_number FROM journal_entries e,"
        " journal_entries p WHERE e.kind = 'reversal' AND p.kind = 'payment'"
        " AND p.source_document = 'P1'").fetchone()
    assert storno is not None and storno[0] == APRIL_20 and storno[1] == storno[2]
    assert account(conn, "2410") == 10000 - 10000 + 10000  # in, reversed, in again
    assert balanced(conn)
    assert post_missing(conn, chart=load_chart()) == (0, 0)  # corrections are all booked


def test_reversal_refusals_and_rows_never_change(conn: psycopg.Connection) -> None:
    pay(conn, "P1", "50.00", "100001")
    with pytest.raises(BillingError, match="unknown payment"):
        reverse_payment(conn, "P9", reason="x", on=APRIL_20, operator="bojan")
    with pytest.raises(BillingError, match="before the payment"):
        reverse_payment(conn, "P1", reason="x", on=APRIL_1, operator="bojan")
    with pytest.raises(BillingError, match="reason"):
        reverse_payment(conn, "P1", reason=" ", on=APRIL_20, operator="bojan")
    with pytest.raises(BillingError, match="rematch_to: the payment is already"):
        reverse_payment(conn, "P1", reason="x", on=APRIL_20, operator="b", rematch_to="100001")
    with pytest.raises(BillingError, match="rematch_to: unknown customer"):
        reverse_payment(conn, "P1", reason="x", on=APRIL_20, operator="b", rematch_to="999999")
    reverse_payment(conn, "P1", reason="pogrešan kupac", on=APRIL_20, operator="bojan")
    conn.commit()
    with pytest.raises(BillingError, match="already reversed"):
        reverse_payment(conn, "P1", reason="x", on=APRIL_20, operator="bojan")
    with pytest.raises(BillingError, match="is a reversal"):
        reverse_payment(conn, "STORNO/P1", reason="x", on=APRIL_20, operator="bojan")
    with pytest.raises(psycopg.errors.IntegrityConstraintViolation, match="never change"):
        conn.execute("UPDATE payments SET amount_fen = 1 WHERE payment_id = 'P1'")
    conn.rollback()
    with conn.transaction():  # a bank id with a correction prefix is refused, not posted
        [out] = record_payments(conn, [{"payment_id": "storno/P7", "paid_on": "2026-04-10",
                                        "amount": "1.00", "customer_id": "100001"}],
                                channel="bank")
    assert out.status == "rejected" and "reserved" in (out.reason or "")


def test_reversed_payment_waits_in_the_queue_and_is_resolved(conn: psycopg.Connection) -> None:
    row = conn.execute("SELECT total_fen FROM invoices WHERE customer_id = '100002'").fetchone()
    assert row is not None
    owed = int(row[0])
    pay(conn, "P1", f"{owed // 100}.{owed % 100:02d}", "100001")  # meant for 100002
    r = reverse_payment(conn, "P1", reason="pogrešno očitana šifra", on=APRIL_20,
                        operator="bojan")
    conn.commit()
    assert r.queued_id == "PREKNJ/P1" and r.rematched_id is None
    queued = conn.execute("SELECT kind, source, paid_on, amount_fen, status FROM"
                          " unmatched_payments WHERE payment_id = 'PREKNJ/P1'").fetchone()
    assert queued == ("unmatched", "reversal", APRIL_10, owed, "open")
    assert balance_fen(conn, "100001") == 8149
    out = resolve_unmatched(conn, "PREKNJ/P1", customer_id="100002",
                            now=datetime(2026, 4, 21, 9, tzinfo=UTC), note="šifra 100002")
    conn.commit()
    assert out is not None and out.status == "accepted"
    assert balance_fen(conn, "100002") == 0
    assert account(conn, "2110") == 8149 + 2501  # 100001 and 200001 still owe
    assert balanced(conn)


def test_refund_pays_back_credit_only(conn: psycopg.Connection) -> None:
    pay(conn, "P1", "100.00", "100001")
    with pytest.raises(BillingError, match="exceeds the customer's credit of 18.51 KM"):
        refund_credit(conn, "100001", 1852, reason="povrat", on=APRIL_20)
    for bad in (0, -5, True, 1.5):
        with pytest.raises(BillingError, match="amount_fen"):
            refund_credit(conn, "100001", bad, reason="povrat", on=APRIL_20)  # type: ignore[arg-type]
    with pytest.raises(BillingError, match="unknown customer"):
        refund_credit(conn, "999999", 100, reason="povrat", on=APRIL_20)
    with pytest.raises(BillingError, match="credit of 0.00 KM"):
        refund_credit(conn, "200001", 100, reason="povrat", on=APRIL_20)
    refund_id = refund_credit(conn, "100001", 1851, reason="povrat preplate", on=APRIL_20,
                              operator="bojan")
    conn.commit()
    assert refund_id == "POVRAT/100001/1"
    assert balance_fen(conn, "100001") == 0
    assert (account(conn, "2110", "100001"), account(conn, "4310", "100001")) == (0, 0)
    assert account(conn, "2410") == 10000 - 1851
    [state] = invoice_states(conn, "100001", APRIL_20)
    assert state.status == "paid"  # the refund takes back only the surplus
    assert balanced(conn)


def payment_events(conn: psycopg.Connection, after: int = 0) -> list[tuple[str, dict]]:
    """(key, payload) of the payment events: the row's payload, or the one the publisher
    builds for a claim check."""
    rows = conn.execute("SELECT key, payload, document FROM outbox_events"
                        " WHERE topic = %s AND event_id > %s ORDER BY event_id",
                        (PAYMENTS, after)).fetchall()
    built = build_payloads(conn, PAYMENTS, [d for _k, p, d in rows if p is None])
    return [(k, p if p is not None else orjson.loads(built[d])) for k, p, d in rows]


def last_event(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT coalesce(max(event_id), 0) FROM outbox_events").fetchone()
    assert row is not None
    return int(row[0])


def test_reversal_and_refund_are_reported_as_payment_events(conn: psycopg.Connection) -> None:
    pay(conn, "P1", "100.00", "100001")  # meant for 200001
    pay(conn, "P2", "30.00", "100002")
    start = last_event(conn)
    with pytest.raises(BillingError, match="already customer"):  # refused: no event
        reverse_payment(conn, "P1", reason="x", on=APRIL_20, operator="b", rematch_to="100001")
    assert payment_events(conn, start) == []
    reverse_payment(conn, "P1", reason="uplata kupca 200001", on=APRIL_20, operator="bojan",
                    rematch_to="200001")
    reverse_payment(conn, "P2", reason="nepoznat uplatilac", on=APRIL_20, operator="bojan")
    refund_id = refund_credit(conn, "200001", 7499, reason="povrat preplate", on=APRIL_20,
                              operator="bojan")
    conn.commit()
    found = payment_events(conn, start)
    for _key, payload in found:
        validate(PAYMENTS, payload)
    assert [(k, p["payment_id"], p["paid_on"], p["amount"], p.get("kind"), p["status"])
            for k, p in found] == [
        ("100001", "STORNO/P1", "2026-04-20", "-100.00", "reversal", "matched"),
        ("200001", "PREKNJ/P1", "2026-04-10", "100.00", None, "matched"),  # a payment
        ("100002", "STORNO/P2", "2026-04-20", "-30.00", "reversal", "matched"),
        ("200001", refund_id, "2026-04-20", "-74.99", "refund", "matched")]
    # the queued PREKNJ/P2 is reported once a clerk records it, not before
    assert "PREKNJ/P2" not in {p["payment_id"] for _k, p in found}


def test_the_publisher_sends_reversal_and_refund_events(conn: psycopg.Connection,
                                                         kafka_bootstrap: str) -> None:
    pay(conn, "P1", "100.00", "100001")
    reverse_payment(conn, "P1", reason="pogrešan kupac", on=APRIL_20, operator="bojan",
                    rematch_to="200001")
    refund_credit(conn, "200001", 7499, reason="povrat preplate", on=APRIL_20)
    conn.commit()
    publisher = OutboxPublisher(kafka_bootstrap, topic_prefix=f"t-{uuid.uuid4().hex[:8]}.")
    try:
        report = publisher.publish_pending(conn)
    finally:
        publisher.close()
    assert (report.refused, report.failed) == (0, 0)
    assert conn.execute("SELECT count(*) FROM outbox_events WHERE published_at IS NULL"
                        ).fetchone() == (0,)


# ---- operator API -----------------------------------------------------------------------

NOW = datetime(2026, 4, 20, 8, 0, tzinfo=UTC)


@pytest.fixture
def client(db_url: str, conn: psycopg.Connection) -> Iterator[TestClient]:
    pay(conn, "P1", "100.00", "100001")
    create_operator(conn, "bojan", "correct horse battery", ["billing"], now=NOW)
    create_operator(conn, "cica", "correct horse battery", ["clerk"], now=NOW)
    conn.commit()
    settings = Settings().model_copy(update={"operator_token": SecretStr("op-secret")})
    with ConnectionPool(db_url, min_size=1, max_size=2, open=True) as pool, TestClient(
            create_app(settings, pool, clock=lambda: NOW), base_url="https://testserver") as c:
        yield c


def _login(client: TestClient, username: str) -> dict[str, str]:
    resp = client.post("/api/v1/operators/login",
                       json={"username": username, "password": "correct horse battery"})
    assert resp.status_code == 200, resp.text
    return {"Authorization": f"Bearer {resp.json()['token']}"}


def test_api_reversal_refund_and_credit(client: TestClient) -> None:
    billing, clerk = _login(client, "bojan"), _login(client, "cica")
    url = "/api/v1/billing/customers/100001/credit"
    assert client.get(url, headers=clerk).status_code == 403
    assert client.get(url, headers=billing).json()["credit"] == "18.51"
    resp = client.post("/api/v1/billing/refunds", headers=billing, json={
        "customer_id": "100001", "amount": "20.00", "reason": "povrat"})
    assert resp.status_code == 422 and "exceeds" in resp.json()["detail"]
    resp = client.post("/api/v1/billing/refunds", headers=billing, json={
        "customer_id": "100001", "amount": "8.51", "reason": "povrat"})
    assert resp.status_code == 200 and resp.json()["refund_id"] == "POVRAT/100001/1"
    resp = client.post("/api/v1/billing/payment-reversals", headers=billing, json={
        "payment_id": "P1", "reason": "pogrešan kupac", "rematch_to": "200001"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["reversal_id"] == "STORNO/P1"
    body = client.get(url, headers=billing).json()
    # owes the invoice again plus the 8.51 KM refunded; the credit left went with the reversal
    assert (body["balance"], body["credit"]) == ("90.00", "0.00")
    assert [c["kind"] for c in body["corrections"]] == ["refund", "reversal"]
    assert client.post("/api/v1/billing/payment-reversals", headers=billing, json={
        "payment_id": "nope", "reason": "x"}).status_code == 404
    assert client.get("/api/v1/billing/customers/999999/credit", headers=billing
                      ).status_code == 404


# ---- command line -----------------------------------------------------------------------


def test_cli_commands(db_url: str, conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch,
                      capsys: pytest.CaptureFixture[str]) -> None:
    from app.cli import main

    pay(conn, "P1", "100.00", "100001")
    conn.commit()
    monkeypatch.setenv("BILLING_DATABASE_URL", db_url)
    assert main(["refund-credit", "100001", "5.00", "--reason", "povrat", "--on",
                 "2026-04-20"]) == 0
    assert "refund POVRAT/100001/1: 5.00 KM" in capsys.readouterr().out
    assert main(["reverse-payment", "P1", "--reason", "pogrešan kupac", "--operator", "bojan",
                 "--on", "2026-04-20", "--rematch-to", "200001"]) == 0
    assert "reversed by STORNO/P1; recorded for 200001 as PREKNJ/P1" in capsys.readouterr().out
    assert main(["refund-credit", "100001", "5.00", "--reason", "x"]) == 2
    assert "exceeds" in capsys.readouterr().err
    assert main(["interest-policy", "--set", "off", "--minimum", "1.00"]) == 0
    assert "interest on invoices: off, minimum 1.00 KM" in capsys.readouterr().out
    assert main(["close-preview", "2026-04", "--issued-on", "2026-05-01", "-v"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("preview 2026-04, issued 2026-05-01, due 2026-05-16: 3 invoices")
    assert "200001" in out and "credit" in out
    assert conn.execute("SELECT count(*) FROM invoices WHERE period = '2026-04'"
                        ).fetchone() == (0,)
