"""A wrong price in a closed month: the operator records a corrected tariff version; the
original version and invoices stay, the next invoices credit the old price and bill the
new one, line by line with the reason (real PostgreSQL, issue dates pinned)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg_pool import ConnectionPool
from pydantic import SecretStr

from api.main import create_app
from api.operators import create_operator
from app.cli import main
from app.settings import Settings
from billing import BillingError
from billing.adjustments import rebill_after_write, rebill_lines
from billing.closer import CloseResult, close_period
from billing.tariff_corrections import record_correction
from tests.integration.test_close import CATALOG, MARCH_READS, push, read, seed

NOW = datetime(2026, 4, 20, 8, 0, tzinfo=UTC)
PW = "correct horse battery"
REASON = "Odluka regulatora 12/2026: pogrešna cijena VT"


def close(conn: psycopg.Connection, period: str, issued_on: date) -> CloseResult:
    return close_period(conn, period, issued_on=issued_on, line_sources=[rebill_lines],
                        after_write=[rebill_after_write])


@pytest.fixture
def conn(db_url: str):
    with psycopg.connect(db_url) as c:
        seed(c)
        c.commit()
        yield c


def corrected_el_hh() -> dict[str, Any]:
    doc = copy.deepcopy(next(d for d in CATALOG if d["tariff_code"] == "EL-HH"))
    for comp in doc["components"]:
        if comp["code"] == "energy_vt_higher":
            comp["price"] = "0.15"
        if comp["code"] == "metering_point_fee":
            comp["price"] = "3.00"
    return doc


def lines(conn: psycopg.Connection, customer: str, period: str
          ) -> list[tuple[str, int, int, int, str]]:
    return [(r[0], r[1], r[2], r[3], r[4]) for r in conn.execute(
        "SELECT l.component, l.quantity_milli, l.unit_price_micro, l.amount_fen, l.description"
        " FROM invoices i JOIN invoice_lines l USING (invoice_number)"
        " WHERE i.customer_id = %s AND i.period = %s AND l.component LIKE 'korekcija:%%'"
        " ORDER BY l.line_no", (customer, period))]


def test_corrected_price_is_credited_and_billed_on_the_next_invoice(
    conn: psycopg.Connection,
) -> None:
    push(conn, MARCH_READS)
    close(conn, "2026-03", date(2026, 4, 1))
    conn.commit()
    versions = conn.execute("SELECT * FROM tariff_versions ORDER BY 1, 2").fetchall()
    march = conn.execute("SELECT * FROM invoice_lines ORDER BY 1, 2").fetchall()
    cid, queued = record_correction(
        conn, tariff_code="EL-HH", valid_from=date(2026, 3, 1), valid_to=date(2026, 3, 31),
        document=corrected_el_hh(), reason=REASON, operator="ana.b")
    assert (cid, queued) == (1, 2)  # MP1 (100001) and MP2 (100002) on EL-HH in March
    assert conn.execute("SELECT metering_point_id, cause FROM rebill_queue ORDER BY 1"
                        ).fetchall() == [("MP1", "tariff"), ("MP2", "tariff")]
    assert conn.execute("SELECT * FROM tariff_versions ORDER BY 1, 2").fetchall() == versions

    close(conn, "2026-04", date(2026, 5, 1))
    got = lines(conn, "100001", "2026-04")
    assert [(c, q, p, a) for c, q, p, a, _ in got] == [
        ("korekcija:energy_vt_higher", 212_345, 150_000, 3185),
        ("korekcija:energy_vt_higher", -212_345, 157_800, -3351),
        ("korekcija:metering_point_fee", 1000, 3_000_000, 300),
        ("korekcija:metering_point_fee", -1000, 3_500_000, -350)]
    assert all(d.startswith("Ispravka cijene za 2026-03: ") and REASON in d
               for *_, d in got)
    assert conn.execute("SELECT * FROM invoice_lines WHERE invoice_number LIKE '2026-00000%%'"
                        " AND invoice_number <= '2026-000003' ORDER BY 1, 2").fetchall() == march
    # 100002's March has an estimate not yet covered by reads: it waits, then both the
    # actual consumption and the corrected price are billed at once
    assert lines(conn, "100002", "2026-04") == []
    push(conn, [read("E2", "1.8.1", "35.000", "2026-05-01T00:00:00+02:00")])
    close(conn, "2026-05", date(2026, 6, 1))
    got = lines(conn, "100002", "2026-05")
    march_kwh = conn.execute(
        "SELECT sum(quantity_milli) FROM daily_consumption WHERE metering_point_id = 'MP2'"
        " AND local_day < '2026-04-01'").fetchone()
    assert march_kwh is not None
    billed_at_new = sum(q for c, q, p, _, _ in got if p == 150_000)
    assert billed_at_new == march_kwh[0]
    billed = conn.execute(  # actual 10 kWh and the estimate of 21–31 March
        "SELECT sum(l.quantity_milli) FROM invoices i JOIN invoice_lines l"
        " USING (invoice_number) WHERE i.customer_id = '100002' AND i.period = '2026-03'"
        " AND l.unit = 'kWh'").fetchone()
    assert billed is not None and billed[0] > 10_000
    assert sum(q for c, q, p, _, _ in got if p == 157_800) == -billed[0]
    assert conn.execute("SELECT count(*) FROM rebill_queue").fetchone() == (0,)
    # closing again bills nothing twice
    close(conn, "2026-06", date(2026, 7, 1))
    assert not [ln for ln in lines(conn, "100001", "2026-06") if "2026-03" in ln[4]]


def test_a_correction_is_checked_before_it_is_recorded(conn: psycopg.Connection) -> None:
    good = {"tariff_code": "EL-HH", "valid_from": date(2026, 3, 1),
            "valid_to": date(2026, 3, 31), "document": corrected_el_hh(), "reason": REASON,
            "operator": "ana.b"}
    bad: list[tuple[dict[str, Any], str]] = [
        ({"valid_to": date(2026, 2, 1)}, "valid_to"),
        ({"reason": " "}, "reason"),
        ({"tariff_code": "NEMA"}, "tariff_code"),
        ({"document": {**corrected_el_hh(), "components": []}}, "document"),
        ({"document": {**corrected_el_hh(), "service": "water", "components": [
            {"code": "w", "kind": "energy", "registers": ["8.0"], "price": "1"}]}},
         "document.service"),
    ]
    for change, field in bad:
        with pytest.raises(BillingError, match=field):
            record_correction(conn, **{**good, **change})
    assert conn.execute("SELECT count(*) FROM tariff_corrections").fetchone() == (0,)


def test_operator_endpoint_records_a_correction_with_role_billing(db_url: str) -> None:
    with psycopg.connect(db_url) as c:
        seed(c)
        push(c, MARCH_READS)
        close(c, "2026-03", date(2026, 4, 1))
        create_operator(c, "bojan", PW, ["billing"], now=NOW)
        create_operator(c, "cica", PW, ["clerk"], now=NOW)
        c.commit()
    settings = Settings().model_copy(update={"operator_token": SecretStr("op-secret")})
    body = {"tariff_code": "EL-HH", "valid_from": "2026-03-01", "valid_to": "2026-03-31",
            "document": corrected_el_hh(), "reason": REASON}
    url = "/api/v1/billing/rebill/tariff-corrections"
    with ConnectionPool(db_url, min_size=1, max_size=2, open=True) as pool, TestClient(
            create_app(settings, pool, clock=lambda: NOW), base_url="https://testserver") as cl:
        def login(name: str) -> dict[str, str]:
            r = cl.post("/api/v1/operators/login", json={"username": name, "password": PW})
            return {"Authorization": f"Bearer {r.json()['token']}"}

        assert cl.post(url, json=body, headers=login("cica")).status_code == 403
        bad = cl.post(url, json={**body, "valid_to": "2026-02-01"}, headers=login("bojan"))
        assert bad.status_code == 422 and "valid_to" in bad.text
        ok = cl.post(url, json=body, headers=login("bojan"))
        assert ok.status_code == 200, ok.text
        assert ok.json()["queued_periods"] == 2
        waiting = cl.get("/api/v1/billing/rebill/queue", headers=login("bojan")).json()
        assert [w["metering_point_id"] for w in waiting["waiting"]] == ["MP1", "MP2"]
    with psycopg.connect(db_url) as c:
        assert c.execute("SELECT operator, reason FROM tariff_corrections").fetchall() == [
            ("bojan", REASON)]


def test_command_line_records_a_correction(db_url: str, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("BILLING_DATABASE_URL", db_url)
    with psycopg.connect(db_url) as c:
        seed(c)
        push(c, MARCH_READS)
        close(c, "2026-03", date(2026, 4, 1))
        c.commit()
    doc = tmp_path / "el-hh.json"
    doc.write_text(json.dumps(corrected_el_hh()), encoding="utf-8")
    args = ["rebill", "--tariff", "EL-HH", "--from", "2026-03-01", "--to", "2026-03-31",
            "--document", str(doc), "--reason", REASON]
    assert main(args) == 0
    assert "tariff correction #1: 2 invoiced periods queued" in capsys.readouterr().out
    assert main([*args[:6], "2026-02-01", *args[7:]]) == 2
    assert "valid_to: 2026-02-01 is before valid_from" in capsys.readouterr().err
    with psycopg.connect(db_url) as c:
        assert c.execute("SELECT count(*), min(operator) FROM tariff_corrections"
                         ).fetchone() == (1, "cli")
