"""The invoice PDF from a real close: text extracted with pypdf, both languages, the
Helvetica fallback, bad input, and the portal route (own invoice only) and ledger reports."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg_pool import ConnectionPool
from pydantic import SecretStr
from pypdf import PdfReader

from api.main import create_app
from api.security import hash_password
from app.settings import Settings
from billing.closer import close_period
from billing.invoice_pdf import InvoicePdfError, UtilityInfo, load_invoice, render_invoice_pdf
from billing.reference import make_payment_reference
from tests.integration.test_close import MARCH_READS, push, seed

ACCOUNT = "1549990000000053"  # MOD 97-10 valid
UTILITY = UtilityInfo(ACCOUNT, id_number="4600000000000", vat_number="600000000000",
                      bank="Demo banka d.d.", phone="049 000 000")
REF_1 = make_payment_reference(2026, 1)


@pytest.fixture
def db(db_url: str) -> Iterator[str]:
    with psycopg.connect(db_url) as c:
        seed(c)
        push(c, MARCH_READS)
        close_period(c, "2026-03", issued_on=date(2026, 4, 1))
        c.execute("UPDATE customers SET address = 'Bulevar mira 1, Brčko', password_hash = %s"
                  " WHERE customer_id = '100001'", (hash_password("Lozinka-A1!"),))
        c.execute("UPDATE customers SET password_hash = %s WHERE customer_id = '100002'",
                  (hash_password("Lozinka-B2!"),))
        c.commit()
    yield db_url


@pytest.fixture
def invoice(db: str) -> dict[str, Any]:
    with psycopg.connect(db) as c:
        found = load_invoice(c, "2026-000001")
    assert found is not None
    return found


def text_of(pdf: bytes) -> str:
    assert pdf.startswith(b"%PDF-")
    return "\n".join(page.extract_text() or "" for page in PdfReader(io.BytesIO(pdf)).pages)


def test_bosnian_invoice_pdf(invoice: dict[str, Any]) -> None:
    pdf = render_invoice_pdf(invoice, utility=UTILITY)
    text = text_of(pdf)
    for expected in ("Račun br. 2026-000001", "81,49", REF_1, "Šifra kupca", "100001",
                     "Rok plaćanja", "16.04.2026.", "Električna energija", "Voda i kanalizacija",
                     "Odvoz smeća", "UPLATNICA", "154-999-00000000-53", "Amra H.",
                     "Bulevar mira 1, Brčko", "MP1", "1.8.1 VT", "212,345", "0,1578", "33,51",
                     "Osnovica PDV 17 %", "69,65", "11,84", "UKUPNO ZA UPLATU", "Demo banka"):
        assert expected in text, expected
    assert pdf == render_invoice_pdf(invoice, utility=UTILITY)  # reproducible


def test_english_invoice_pdf(invoice: dict[str, Any]) -> None:
    text = text_of(render_invoice_pdf(invoice, utility=UTILITY, lang="en"))
    for expected in ("Invoice No. 2026-000001", "81.49", REF_1, "TOTAL TO PAY", "Electricity",
                     "Waste collection", "2026-04-16", "1.8.2 low", "PAYMENT SLIP"):
        assert expected in text, expected


@pytest.mark.parametrize("font", [None, "NoSuchFont.ttf"])
def test_helvetica_fallback_transliterates(invoice: dict[str, Any], font: str | None) -> None:
    text = text_of(render_invoice_pdf(invoice, utility=UTILITY, font=font))
    for expected in ("Racun br. 2026-000001", "81,49", REF_1, "Odvoz smeca", "Sifra kupca",
                     "Brcko"):
        assert expected in text, expected
    assert "č" not in text and "š" not in text


@pytest.mark.parametrize(("change", "why"), [
    ({"total_fen": 8150}, "invoice.total_fen: is not net_fen"),
    ({"payment_reference": ""}, "invoice.payment_reference: is required"),
    ({"due_on": "16.04.2026"}, "invoice.due_on: not a date"),
    ({"net_fen": "69.65"}, "invoice.net_fen: must be an integer"),
])
def test_bad_invoice_is_named(invoice: dict[str, Any], change: dict[str, Any], why: str) -> None:
    with pytest.raises(InvoicePdfError, match=why):
        render_invoice_pdf({**invoice, **change}, utility=UTILITY)


def test_bad_account_and_language(invoice: dict[str, Any]) -> None:
    with pytest.raises(InvoicePdfError, match="utility.account: not a valid BiH account"):
        render_invoice_pdf(invoice, utility=UtilityInfo("1549990000000099"))
    with pytest.raises(InvoicePdfError, match="lang: must be one of bs, en"):
        render_invoice_pdf(invoice, utility=UTILITY, lang="de")


def test_load_invoice_only_for_its_customer(db: str) -> None:
    with psycopg.connect(db) as c:
        assert load_invoice(c, "2026-000001", "100002") is None
        assert load_invoice(c, "2026-999999") is None
        inv = load_invoice(c, "2026-000002", "100002")
    assert inv is not None
    assert (inv["customer_name"], inv["total_fen"], inv["issued_on"]) == (
        "Nedim K.", 665, date(2026, 4, 1))  # with the estimate of 21–31 March
    assert inv["metering_points"] == [{"metering_point_id": "MP2",
                                       "address": "Reisa Džemaludina Čauševića 2"}]


class _Clock:
    def __call__(self) -> datetime:
        return datetime(2026, 4, 20, 8, 0, tzinfo=UTC)


@pytest.fixture
def client(db: str) -> Iterator[TestClient]:
    settings = Settings(recipient_account=ACCOUNT, operator_token=SecretStr("op-secret"))
    with ConnectionPool(db, min_size=1, max_size=2, open=True) as pool:
        app = create_app(settings, pool, clock=_Clock())
        with TestClient(app, base_url="https://testserver") as c:
            yield c


def test_portal_pdf_route(client: TestClient) -> None:
    assert client.get("/api/v1/portal/invoices/2026-000001/pdf").status_code == 401
    r = client.post("/api/v1/portal/login",
                    json={"customer_id": "100001", "password": "Lozinka-A1!"})
    assert r.status_code == 200
    r = client.get("/api/v1/portal/invoices/2026-000001/pdf")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/pdf"
    assert r.headers["content-disposition"] == 'inline; filename="racun-2026-000001.pdf"'
    assert "81,49" in text_of(r.content)
    en = client.get("/api/v1/portal/invoices/2026-000001/pdf?lang=en")
    assert "TOTAL TO PAY" in text_of(en.content)
    # someone else's invoice is as unknown as a missing one
    for number in ("2026-000002", "2026-999999"):
        r = client.get(f"/api/v1/portal/invoices/{number}/pdf")
        assert (r.status_code, r.json()) == (404, {"detail": "no such invoice"})
    assert client.get("/api/v1/portal/invoices/2026-000001/pdf?lang=de").status_code == 422


def test_ledger_report_routes(client: TestClient) -> None:
    assert client.get("/api/v1/ledger/trial-balance").status_code == 401
    auth = {"Authorization": "Bearer op-secret"}
    r = client.get("/api/v1/ledger/trial-balance?as_of=2026-04-30", headers=auth)
    assert r.status_code == 200
    body = r.json()
    # 111.12 + 2.03 for 100002's estimate of 21–31 March (billing.estimation)
    assert (body["debit"], body["credit"]) == ("113.15", "113.15")
    assert body["rows"][0] == {"account": "2110", "name": "Kupci u zemlji – potraživanja",
                               "kind": "asset", "debit": "113.15", "credit": "0.00",
                               "balance": "113.15"}
    r = client.get("/api/v1/ledger/entries.csv?period=2026-04", headers=auth)
    assert r.status_code == 200
    assert r.text.splitlines()[0].startswith("entry_no,entry_date,source_type")
    assert len(r.text.splitlines()) == 1 + 11
    assert client.get("/api/v1/ledger/entries.csv?period=2026-4", headers=auth
                      ).status_code == 422
