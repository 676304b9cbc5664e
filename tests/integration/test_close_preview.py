"""The close preview on a real PostgreSQL: exactly the drafts the close then writes, with
the credit it would apply and the customers it would skip, and nothing written."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg_pool import ConnectionPool
from pydantic import SecretStr

from api.main import create_app
from api.operators import create_operator
from app.settings import Settings
from billing import BillingError
from billing.close_preview import preview_close, preview_close_report
from billing.closer import close_period
from billing.payments import record_payments
from tests.integration.test_close import APRIL_1, MARCH_READS, push, seed

TABLES = ("invoices", "invoice_lines", "invoice_counters", "journal_entries",
          "customer_credit_moves", "interest_charges")


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_url) as c:
        seed(c)
        push(c, MARCH_READS)
        with c.transaction():  # 200001 pays 10.00 KM before its first invoice
            record_payments(c, [{"payment_id": "P0", "paid_on": "2026-03-20", "amount": "10.00",
                                 "customer_id": "200001"}], channel="bank")
        # a second contract on 100002's metering point: the close must hold 100002 back
        c.execute("INSERT INTO customers (customer_id, name, kind) VALUES"
                  " ('100003', 'Dupli Ugovor', 'household')")
        c.execute("INSERT INTO contracts VALUES ('C9E', '100003', 'MP2', 'electricity',"
                  " 'EL-HH', '2026-03-15', NULL)")
        c.commit()
        yield c


def counts(conn: psycopg.Connection) -> list[Any]:
    return [conn.execute(f"SELECT count(*) FROM {t}").fetchone() for t in TABLES]


def written(conn: psycopg.Connection) -> dict[str, tuple[Any, ...]]:
    out = {}
    for number, customer, net, vat, total in conn.execute(
            "SELECT invoice_number, customer_id, net_fen, vat_fen, total_fen FROM invoices"):
        lines = conn.execute(
            "SELECT service, component, register, quantity_milli, unit_price_micro, amount_fen,"
            " vat_rate FROM invoice_lines WHERE invoice_number = %s ORDER BY line_no",
            (number,)).fetchall()
        out[customer] = (net, vat, total, lines)
    return out


def test_preview_is_what_the_close_writes_and_writes_nothing(conn: psycopg.Connection) -> None:
    before = counts(conn)
    report = preview_close_report(conn, "2026-03", issued_on=APRIL_1)
    conn.commit()
    assert counts(conn) == before
    assert report.due_on == date(2026, 4, 16) and report.invoices_existing == 0
    assert list(report.skipped) == ["100002", "100003"]
    assert "overlap on metering point MP2" in report.skipped["100002"]
    by = {p.draft.customer_id: p for p in report.invoices}
    assert sorted(by) == ["100001", "200001"]
    assert (by["200001"].credit_applied_fen, by["200001"].to_pay_fen) == (
        1000, by["200001"].draft.total_fen - 1000)
    assert by["100001"].credit_applied_fen == 0
    assert report.total_fen == sum(p.draft.total_fen for p in report.invoices)
    assert [d.customer_id for d in preview_close(conn, "2026-03", issued_on=APRIL_1)] == [
        "100001", "200001"]
    result = close_period(conn, "2026-03", issued_on=APRIL_1)
    conn.commit()
    assert result.skipped == report.skipped and result.total_fen == report.total_fen
    expected = {p.draft.customer_id: (
        p.draft.net_fen, p.draft.vat_fen, p.draft.total_fen,
        [(ln.service, ln.component, ln.register, ln.quantity_milli, ln.unit_price_micro,
          ln.amount_fen, ln.vat_rate) for ln in p.draft.lines]) for p in report.invoices}
    assert written(conn) == expected
    # once closed, the preview shows nothing left to invoice
    again = preview_close_report(conn, "2026-03", issued_on=APRIL_1)
    assert (again.invoices, again.invoices_existing) == ([], 2)


def test_preview_refuses_what_the_close_refuses(conn: psycopg.Connection) -> None:
    with pytest.raises(BillingError, match="has not ended"):
        preview_close_report(conn, "2026-03", issued_on=date(2026, 3, 31))
    with pytest.raises(BillingError, match="period: must be YYYY-MM"):
        preview_close_report(conn, "2026-13", issued_on=APRIL_1)


NOW = datetime(2026, 4, 2, 8, 0, tzinfo=UTC)


def test_api_preview(db_url: str, conn: psycopg.Connection) -> None:
    create_operator(conn, "bojan", "correct horse battery", ["billing"], now=NOW)
    create_operator(conn, "cica", "correct horse battery", ["clerk"], now=NOW)
    conn.commit()
    settings = Settings().model_copy(update={"operator_token": SecretStr("op-secret")})
    with ConnectionPool(db_url, min_size=1, max_size=2, open=True) as pool, TestClient(
            create_app(settings, pool, clock=lambda: NOW), base_url="https://testserver") as c:
        auth = {}
        for user in ("bojan", "cica"):
            resp = c.post("/api/v1/operators/login",
                          json={"username": user, "password": "correct horse battery"})
            auth[user] = {"Authorization": f"Bearer {resp.json()['token']}"}
        url = "/api/v1/billing/close/2026-03/preview"
        assert c.get(url, headers=auth["cica"]).status_code == 403
        resp = c.get(url, headers=auth["bojan"])
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert (body["invoices"], body["skipped_count"]) == (2, 2)
        assert body["issued_on"] == "2026-04-02" and body["due_on"] == "2026-04-17"
        drafts = {d["customer_id"]: d for d in body["drafts"]}
        assert drafts["200001"]["credit_applied"] == "10.00"
        line = drafts["100001"]["lines"][0]
        assert line["unit"] == "kWh" and line["quantity"] == "212.345"
        assert line["amount"] == "33.51" and line["vat_rate"] == "17"
        assert c.get("/api/v1/billing/close/2026-04/preview", headers=auth["bojan"]
                     ).status_code == 422  # April has not ended on 2 April
        assert c.get(url + "?issued_on=2026-03-30", headers=auth["bojan"]).status_code == 422
    assert counts(conn)[0] == (0,)
