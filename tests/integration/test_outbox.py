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
from billing.outbox import build_payloads, invoice_events_after_write
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
    """(key, payload) of the topic's events; a claim-check row's payload is built from its
    document, as the publisher builds it."""
    rows = conn.execute("SELECT key, payload, document FROM outbox_events WHERE topic = %s"
                        " ORDER BY event_id", (topic,)).fetchall()
    built = build_payloads(conn, topic, [d for _, p, d in rows if p is None])
    return [(k, p if p is not None else orjson.loads(built[d])) for k, p, d in rows]


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


# The payloads as the outbox stored them before the claim check (migration 0021's rows,
# jsonb text, captured from this very scenario): the publisher must send the same.
OLD_INVOICE_2026_000001 = (
    '{"net": "69.65", "vat": "11.84", "lines": [{"unit": "kWh", "amount": "33.51", "line_'
    'no": 1, "service": "electricity", "quantity": "212.345", "register": "1.8.1", "vat_r'
    'ate": "17.00", "component": "energy_vt_higher", "unit_price": "0.1578", "description'
    '": "Aktivna energija VT (viša sezona)", "metering_point_id": "MP1"}, {"unit": "kWh",'
    ' "amount": "7.79", "line_no": 2, "service": "electricity", "quantity": "98.765", "re'
    'gister": "1.8.2", "vat_rate": "17.00", "component": "energy_mt_higher", "unit_price"'
    ': "0.0789", "description": "Aktivna energija MT (viša sezona)", "metering_point_id":'
    ' "MP1"}, {"unit": "month", "amount": "3.50", "line_no": 3, "service": "electricity",'
    ' "quantity": "1.000", "register": null, "vat_rate": "17.00", "component": "metering_'
    'point_fee", "unit_price": "3.50", "description": "Naknada za mjerno mjesto", "meteri'
    'ng_point_id": "MP1"}, {"unit": "m3", "amount": "13.35", "line_no": 4, "service": "wa'
    'ter", "quantity": "12.500", "register": "8.0", "vat_rate": "17.00", "component": "wa'
    'ter_sewage", "unit_price": "1.068376", "description": "Voda i kanalizacija", "meteri'
    'ng_point_id": "MP1"}, {"unit": "month", "amount": "2.50", "line_no": 5, "service": "'
    'water", "quantity": "1.000", "register": null, "vat_rate": "17.00", "component": "me'
    'tering_point_fee", "unit_price": "2.50", "description": "Fiksna naknada po mjernom m'
    'jestu", "metering_point_id": "MP1"}, {"unit": "month", "amount": "9.00", "line_no": '
    '6, "service": "waste", "quantity": "1.000", "register": null, "vat_rate": "17.00", "'
    'component": "waste_household", "unit_price": "9.00", "description": "Odvoz smeća po '
    'domaćinstvu", "metering_point_id": "MP1"}], "total": "81.49", "due_on": "2026-04-16"'
    ', "number": "2026-000001", "period": "2026-03", "currency": "BAM", "issued_on": "202'
    '6-04-01", "customer_id": "100001", "vat_breakdown": [{"vat": "11.84", "base": "69.65'
    '", "vat_rate": "17.00"}], "payment_reference": "2600000126"}'
)
OLD_PAYMENT_E_1 = (
    '{"amount": "81.49", "status": "matched", "channel": "bank", "paid_on": "2026-04-10",'
    ' "currency": "BAM", "reference": "2600000126", "payment_id": "BA391549990000000099:E'
    '-1", "customer_id": "100001"}'
)
OLD_LEDGER_2026_000004 = (
    '{"lines": [{"debit": "81.49", "credit": "0.00", "account": "2410"}, {"debit": "0.00"'
    ', "credit": "81.49", "account": "2110", "customer_id": "100001"}], "entry_no": "2026'
    '-000004", "entry_date": "2026-04-10", "description": "Uplata BA391549990000000099:E-'
    '1 za račun 2026-000001", "source_document": {"id": "BA391549990000000099:E-1", "type'
    '": "payment"}}'
)


def test_claim_checks_are_sent_with_the_old_payloads(conn: psycopg.Connection,
                                                               kafka_bootstrap: str) -> None:
    close_period(conn, "2026-03", issued_on=date(2026, 4, 1))
    import_statement(conn, STATEMENT, now=NOW)
    conn.commit()
    rows = conn.execute("SELECT topic, key, document, payload FROM outbox_events"
                        " ORDER BY event_id").fetchall()
    # every event is a claim check: the document's id, no payload
    assert {(t, d is None, p is None) for t, _, d, p in rows} == {
        (INVOICES, False, True), (LEDGER, False, True), (PAYMENTS, False, True)}
    assert ("billing.invoices.v1", "100001", "2026-000001", None) in rows
    # a row that carries its payload is sent as it is; a payment claim check is built
    conn.execute("INSERT INTO outbox_events (topic, key, payload) VALUES (%s, 'old', %s)",
                 (PAYMENTS, OLD_PAYMENT_E_1))
    conn.execute("INSERT INTO outbox_events (topic, key, document) VALUES (%s, 'claim', %s)",
                 (PAYMENTS, f"{IBAN}:E-1"))
    conn.commit()
    prefix = f"t-{uuid.uuid4().hex[:8]}."
    publisher = OutboxPublisher(kafka_bootstrap, topic_prefix=prefix)
    try:
        assert publisher.publish_pending(conn).published == len(rows) + 2
    finally:
        publisher.close()
    sent = {(topic, m.key().decode()): m.value()
            for topic in (INVOICES, PAYMENTS, LEDGER)
            for m in drain(kafka_bootstrap, prefix + topic, 10, timeout=8)}
    # the very bytes the publisher sent before: orjson of the stored jsonb
    for (topic, key), old in [((INVOICES, "100001"), OLD_INVOICE_2026_000001),
                              ((PAYMENTS, "100001"), OLD_PAYMENT_E_1),
                              ((PAYMENTS, "old"), OLD_PAYMENT_E_1),
                              ((PAYMENTS, "claim"), OLD_PAYMENT_E_1),
                              ((LEDGER, "2026-000004"), OLD_LEDGER_2026_000004)]:
        assert sent[topic, key] == orjson.dumps(orjson.loads(old)), (topic, key)
    assert len(orjson.loads(sent[INVOICES, "100001"])["lines"]) == 6


def test_build_payloads_equals_the_old_payloads(conn: psycopg.Connection) -> None:
    """Without Kafka: the payload built from each document is the text the outbox stored."""
    close_period(conn, "2026-03", issued_on=date(2026, 4, 1))
    import_statement(conn, STATEMENT, now=NOW)
    conn.commit()
    assert build_payloads(conn, INVOICES, ["2026-000001", "2026-999999"]) == {
        "2026-000001": OLD_INVOICE_2026_000001}
    assert build_payloads(conn, PAYMENTS, [f"{IBAN}:E-1"]) == {f"{IBAN}:E-1": OLD_PAYMENT_E_1}
    assert build_payloads(conn, LEDGER, ["2026-000004"]) == {
        "2026-000004": OLD_LEDGER_2026_000004}


def test_publisher_refuses_a_claim_check_without_document(db_url: str) -> None:
    with psycopg.connect(db_url) as c:
        c.execute("INSERT INTO outbox_events (topic, key, document) VALUES (%s, 'k', 'nope')",
                  (INVOICES,))
        with pytest.raises(psycopg.errors.CheckViolation):
            c.execute("INSERT INTO outbox_events (topic, key) VALUES (%s, 'k')", (INVOICES,))
        c.rollback()
        c.execute("INSERT INTO outbox_events (topic, key, document) VALUES (%s, 'k', 'nope')",
                  (INVOICES,))
        c.commit()
        publisher = OutboxPublisher("127.0.0.1:1", delivery_timeout_s=1)
        report = publisher.publish_pending(c)
        publisher.close(0)
        assert (report.published, report.refused, report.failed) == (0, 1, 0)
        error = c.execute("SELECT error FROM outbox_events").fetchone()
        assert error is not None and "no document" in error[0] and "'nope'" in error[0]


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
