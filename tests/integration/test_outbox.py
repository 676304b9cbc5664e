"""The transactional outbox on a real PostgreSQL (and the publisher on the real Kafka broker):
close → one event per invoice, payment import → payment and ledger events, every payload
valid against its contract, written only if the business transaction commits, published
once."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

import orjson
import psycopg
import pytest

from app.cli import main
from billing.bank_import import import_statement
from billing.close_hooks import CloseContext, WrittenInvoice
from billing.closer import close_period
from billing.outbox import invoice_events_after_write
from rating.money import format_km, format_price, format_quantity
from schemas.contracts import INVOICES, LEDGER, PAYMENTS, validate
from stream.outbox_publisher import OutboxPublisher
from tests.integration.test_bank_import import STATEMENT
from tests.integration.test_close import MARCH_READS, push, seed
from tests.integration.test_kafka_ingest import drain
from tests.unit.test_camt053 import IBAN

NOW = datetime(2026, 4, 11, 6, 30, tzinfo=UTC)
CSV = (b"transaction_id;paid_on;amount;reference;customer_code\n"
       b"C-1;11.04.2026;25,01;26 000003 20;\n")


def events(conn: psycopg.Connection, topic: str) -> list[tuple[str, dict[str, Any]]]:
    return [(k, p) for k, p in conn.execute(
        "SELECT key, payload FROM outbox_events WHERE topic = %s ORDER BY event_id", (topic,))]


@pytest.fixture
def conn(db_url: str):
    with psycopg.connect(db_url) as c:
        seed(c)
        push(c, MARCH_READS)
        c.commit()
        yield c


def test_close_writes_one_valid_event_per_invoice(conn: psycopg.Connection) -> None:
    res = close_period(conn, "2026-03", issued_on=date(2026, 4, 1))
    conn.commit()
    assert res.invoices_created == 3
    found = events(conn, INVOICES)
    heads = conn.execute("SELECT invoice_number, customer_id, total_fen, payment_reference"
                         " FROM invoices ORDER BY invoice_number").fetchall()
    assert [(p["number"], k, p["total"], p["payment_reference"]) for k, p in found] == [
        (n, c, format_km(t), r) for n, c, t, r in heads]
    for _, payload in found:
        validate(INVOICES, payload)
        lines = conn.execute(
            "SELECT line_no, quantity_milli, unit_price_micro, amount_fen, register FROM"
            " invoice_lines WHERE invoice_number = %s ORDER BY line_no", (payload["number"],)
        ).fetchall()
        assert [(x["line_no"], x["quantity"], x["unit_price"], x["amount"], x["register"])
                for x in payload["lines"]] == [
            (n, format_quantity(q), format_price(p), format_km(a), r) for n, q, p, a, r in lines]
        assert sum(int(v["vat"].replace(".", "")) for v in payload["vat_breakdown"]) == int(
            payload["vat"].replace(".", ""))
    prices = {x["unit_price"] for _, p in found for x in p["lines"]}
    assert {"0.1578", "2.50"} & prices, prices  # 2–6 decimals, as the contract wants
    # the ledger: one event per journal entry (the close booked one per invoice)
    ledger = events(conn, LEDGER)
    assert [p["source_document"] for _, p in ledger] == [
        {"type": "invoice", "id": n} for n, *_ in heads]
    for key, payload in ledger:
        validate(LEDGER, payload)
        assert key == payload["entry_no"]
    assert ledger[0][1]["lines"][0]["customer_id"] == "100001"
    assert "customer_id" not in ledger[0][1]["lines"][-1]  # VAT line: no customer


def test_failed_close_leaves_no_event(conn: psycopg.Connection) -> None:
    def boom(_ctx: CloseContext, _written: Sequence[WrittenInvoice]) -> None:
        raise RuntimeError("a later step of the close fails")

    with pytest.raises(RuntimeError, match="later step"):
        close_period(conn, "2026-03", issued_on=date(2026, 4, 1),
                     after_write=[invoice_events_after_write, boom])
    conn.rollback()
    assert conn.execute("SELECT (SELECT count(*) FROM outbox_events),"
                        " (SELECT count(*) FROM invoices)").fetchone() == (0, 0)
    res = close_period(conn, "2026-03", issued_on=date(2026, 4, 1))
    conn.commit()
    again = close_period(conn, "2026-03", issued_on=date(2026, 4, 1))  # nothing new
    conn.commit()
    assert (res.invoices_created, again.invoices_created) == (3, 0)
    assert conn.execute("SELECT topic, count(*) FROM outbox_events GROUP BY 1 ORDER BY 1"
                        ).fetchall() == [(INVOICES, 3), (LEDGER, 3)]


def test_payment_import_writes_payment_and_ledger_events(conn: psycopg.Connection) -> None:
    close_period(conn, "2026-03", issued_on=date(2026, 4, 1))
    conn.commit()
    report = import_statement(conn, STATEMENT, now=NOW)
    csv = import_statement(conn, CSV, now=NOW)
    conn.commit()
    assert (report.matched, csv.matched) == (2, 1)
    payments = events(conn, PAYMENTS)
    for _, payload in payments:
        validate(PAYMENTS, payload)
    assert [(k, p["payment_id"], p["amount"], p["reference"], p["status"])
            for k, p in payments] == [
        ("100001", f"{IBAN}:E-1", "81.49", "2600000126", "matched"),
        ("100002", f"{IBAN}:E-2", "4.62", None, "matched"),
        ("200001", "C-1", "25.01", "2600000320", "matched")]
    ledger = [p for _, p in events(conn, LEDGER) if p["source_document"]["type"] == "payment"]
    for payload in ledger:
        validate(LEDGER, payload)
    assert [(p["source_document"]["id"], p["lines"][0]["debit"]) for p in ledger] == [
        (f"{IBAN}:E-1", "81.49"), (f"{IBAN}:E-2", "4.62"), ("C-1", "25.01")]
    # importing again records nothing and reports nothing
    before = conn.execute("SELECT count(*) FROM outbox_events").fetchone()
    import_statement(conn, STATEMENT, now=NOW)
    conn.commit()
    assert conn.execute("SELECT count(*) FROM outbox_events").fetchone() == before


def test_publisher_refuses_a_payload_that_breaks_its_contract(db_url: str) -> None:
    bad = {"payment_id": "P-1", "customer_id": "12", "paid_on": "2026-04-01", "amount": "1.00",
           "reference": None, "channel": "bank", "status": "matched"}
    with psycopg.connect(db_url) as c:
        c.execute("INSERT INTO outbox_events (topic, key, payload) VALUES (%s, 'k', %s)",
                  (PAYMENTS, orjson.dumps(bad).decode()))
        c.commit()
        # nothing valid to send: no broker is contacted
        publisher = OutboxPublisher("127.0.0.1:1", delivery_timeout_s=1)
        report = publisher.publish_pending(c)
        assert (report.published, report.refused, report.failed) == (0, 1, 0)
        row = c.execute("SELECT error, published_at FROM outbox_events").fetchone()
        assert row is not None and row[1] is None
        assert row[0].startswith("billing.payments.v1: $.customer_id")
        assert publisher.publish_pending(c).refused == 0  # not tried again
        publisher.close(0)


def test_publisher_sends_every_event_once(conn: psycopg.Connection,
                                          kafka_bootstrap: str) -> None:
    close_period(conn, "2026-03", issued_on=date(2026, 4, 1))
    import_statement(conn, STATEMENT, now=NOW)
    conn.commit()
    expected = {t: events(conn, t) for t in (INVOICES, PAYMENTS, LEDGER)}
    assert [len(v) for v in expected.values()] == [3, 2, 5]
    prefix = f"t-{uuid.uuid4().hex[:8]}."
    publisher = OutboxPublisher(kafka_bootstrap, topic_prefix=prefix)
    try:
        report = publisher.publish_pending(conn, limit=4)  # several batches
        assert (report.published, report.refused, report.failed) == (10, 0, 0)
        assert conn.execute("SELECT count(*) FROM outbox_events WHERE published_at IS NULL"
                            ).fetchone() == (0,)
        assert publisher.publish_pending(conn).published == 0  # a re-run sends nothing
    finally:
        publisher.close()
    for topic, want in expected.items():
        got = drain(kafka_bootstrap, prefix + topic, len(want) + 1, timeout=8)
        sent = [(m.key().decode(), orjson.loads(m.value())) for m in got]
        assert sorted(sent, key=_order) == sorted(want, key=_order)


def _order(kv: tuple[str, dict[str, Any]]) -> tuple[str, bytes]:
    return kv[0], orjson.dumps(kv[1], option=orjson.OPT_SORT_KEYS)


def test_cli_publish_events_needs_kafka(db_url: str, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("BILLING_DATABASE_URL", db_url)
    monkeypatch.delenv("BILLING_KAFKA_BOOTSTRAP", raising=False)
    assert main(["publish-events", "--once"]) == 2
    assert "BILLING_KAFKA_BOOTSTRAP is not set" in capsys.readouterr().err


def test_cli_publish_events_once(conn: psycopg.Connection, db_url: str, kafka_bootstrap: str,
                                 monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    close_period(conn, "2026-03", issued_on=date(2026, 4, 1))
    conn.commit()
    monkeypatch.setenv("BILLING_DATABASE_URL", db_url)
    monkeypatch.setenv("BILLING_KAFKA_BOOTSTRAP", kafka_bootstrap)
    prefix = f"t-{uuid.uuid4().hex[:8]}."
    assert main(["publish-events", "--once", "--topic-prefix", prefix]) == 0
    assert "outbox: published 6, refused 0, not acknowledged 0" in capsys.readouterr().out
    assert len(drain(kafka_bootstrap, prefix + INVOICES, 4, timeout=8)) == 3
    assert main(["publish-events", "--once", "--topic-prefix", prefix]) == 0
    assert "outbox: published 0," in capsys.readouterr().out
