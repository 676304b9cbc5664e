"""The self-read form (/ocitanje) on a real PostgreSQL: reads go through the real chain
(channel "portal", source "self") and every register gets its own answer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg_pool import ConnectionPool

from api.main import create_app
from app.settings import Settings
from ingest.file_import import import_document
from tests.integration.test_api_portal import Clock
from tests.integration.test_pages import found, hidden_csrf, login_form

CATALOG = json.loads((Path(__file__).resolve().parents[2] / "app/demo/catalog.json").read_text())
NOW = datetime(2026, 4, 20, 8, 0, tzinfo=UTC)  # 10:00 in Brčko
APRIL_1 = "2026-04-01T00:00:00+02:00"


def document() -> dict:
    def meter(mid: str, service: str, digits: int, registers: list[str], mp: str) -> dict:
        return {"meter_id": mid, "service": service, "digits": digits, "multiplier": 1,
                "registers": registers, "installations": [
                    {"metering_point_id": mp, "installed_at": "2026-01-01T00:00:00+01:00"}]}

    def read(mid: str, register: str, value: str, unit: str) -> dict:
        return {"meter_id": mid, "register": register, "read_at": APRIL_1, "value": value,
                "unit": unit, "source": "amr"}

    return {
        "tariffs": CATALOG,
        "customers": [
            {"customer_id": "100001", "name": "Amra H.", "kind": "household", "password": "a-1"},
            {"customer_id": "100002", "name": "Boris K.", "kind": "household", "password": "b-2"},
        ],
        "metering_points": [
            {"metering_point_id": "MP-1", "address": "Bulevar mira 1", "household_members": 2},
            {"metering_point_id": "MP-2", "address": "Trg pravde 2", "household_members": 1},
        ],
        "meters": [
            meter("E-1", "electricity", 6, ["1.8.1", "1.8.2"], "MP-1"),
            meter("W-1", "water", 5, ["8.0"], "MP-1"),
            meter("E-2", "electricity", 6, ["1.8.1", "1.8.2"], "MP-2"),
        ],
        "contracts": [
            {"contract_id": f"K-{c}-{s}", "customer_id": c, "metering_point_id": mp,
             "service": s, "tariff_code": t, "valid_from": "2026-01-01"}
            for c, mp, services in (("100001", "MP-1", (("electricity", "EL-HH"),
                                                         ("water", "W-HH"),
                                                         ("waste", "WA-HH"))),
                                    ("100002", "MP-2", (("electricity", "EL-HH"),)))
            for s, t in services
        ],
        "readings": [
            read("E-1", "1.8.1", "10234.5", "kWh"), read("E-1", "1.8.2", "5120.25", "kWh"),
            read("W-1", "8.0", "812", "m3"), read("E-2", "1.8.1", "100", "kWh"),
        ],
    }


@pytest.fixture
def pool(db_url: str) -> Iterator[ConnectionPool]:
    with psycopg.connect(db_url) as conn:
        report = import_document(conn, document(), now=int(NOW.timestamp()))
        assert report.rejected == 0, report.summary()
    with ConnectionPool(db_url, min_size=1, max_size=4, open=True) as p:
        yield p


@pytest.fixture
def client(pool: ConnectionPool) -> Iterator[TestClient]:
    app = create_app(Settings(), pool, clock=Clock(NOW))
    with TestClient(app, base_url="https://testserver") as c:
        assert login_form(c, "100001", "a-1").status_code == 303
        yield c


def send(client: TestClient, values: dict[str, str] | None = None) -> tuple[int, str]:
    """Post the form with values by "meter:register"."""
    page = client.get("/ocitanje").text
    fields = {"csrf": hidden_csrf(page), **{f"r:{k}": v for k, v in (values or {}).items()}}
    resp = client.post("/ocitanje", data=fields)
    return resp.status_code, resp.text


def answer(html: str, meter: str, register: str) -> tuple[str, str]:
    pattern = (rf'id="in-{meter}-{register}-answer" data-status="([a-z]+)"'
               r' role="status">([^<]*)</p>')
    return found(pattern, html), found(pattern.replace('"([a-z]+)"', '"[a-z]+"'), html)


def stored(pool: ConnectionPool) -> list[tuple]:
    with pool.connection() as conn:
        return conn.execute(
            "SELECT meter_id, register, value_milli, source FROM readings"
            " WHERE read_at = %s ORDER BY 1, 2", (NOW,)).fetchall()


def test_the_form_lists_only_the_customers_meters(client: TestClient) -> None:
    html = client.get("/ocitanje").text
    assert 'name="r:E-1:1.8.1"' in html and 'name="r:E-1:1.8.2"' in html
    assert 'name="r:W-1:8.0"' in html
    assert "E-2" not in html
    assert "Zadnje očitanje: 10.234,5 kWh, 01.04.2026." in html
    assert "Zadnje očitanje: 812 m³, 01.04.2026." in html
    assert '<label for="in-E-1-1.8.1">Viša tarifa (VT)' in html
    assert 'aria-current="page">Očitanje</a>' in html


def test_reads_go_through_the_chain_with_an_answer_each(
    client: TestClient, pool: ConnectionPool
) -> None:
    status, html = send(client, {"E-1:1.8.1": "10300,5", "W-1:8.0": "812,75", "E-2:1.8.1": "999"})
    assert status == 200
    assert answer(html, "E-1", "1.8.1") == (
        "accepted", "Primljeno: 10.300,5 kWh. Potrošnja od zadnjeg očitanja: 66 kWh.")
    assert answer(html, "W-1", "8.0") == (
        "accepted", "Primljeno: 812,75 m³. Potrošnja od zadnjeg očitanja: 0,75 m³.")
    assert 'id="in-E-1-1.8.2-answer"' not in html  # left empty: not sent
    assert "Zadnje očitanje: 10.300,5 kWh, 20.04.2026." in html
    assert stored(pool) == [("E-1", "1.8.1", 10_300_500, "self"), ("W-1", "8.0", 812_750, "self")]
    with pool.connection() as conn:  # rated like any read: 66 kWh from 04-01 to 04-20
        rated = conn.execute("SELECT sum(quantity_milli) FROM consumption_intervals"
                             " WHERE meter_id = 'E-1' AND register = '1.8.1'").fetchone()
        assert rated == (66_000,)
        assert conn.execute("SELECT count(*) FROM rejected_reads").fetchone() == (0,)
    # the same value again at the same instant is a duplicate, not a second read
    status, html = send(client, {"E-1:1.8.1": "10300.500"})
    assert answer(html, "E-1", "1.8.1") == ("duplicate", "Ovo očitanje je već zabilježeno.")


def test_a_lower_value_is_refused_and_kept_in_the_form(
    client: TestClient, pool: ConnectionPool
) -> None:
    status, html = send(client, {"E-1:1.8.1": "10200", "E-1:1.8.2": "5130"})
    assert status == 200
    assert answer(html, "E-1", "1.8.1") == (
        "rejected",
        "Nije prihvaćeno: vrijednost je manja od zadnjeg očitanja (10.234,5 kWh).")
    assert answer(html, "E-1", "1.8.2")[0] == "accepted"
    assert 'value="10200"' in html and 'value="5130"' not in html
    assert stored(pool) == [("E-1", "1.8.2", 5_130_000, "self")]
    with pool.connection() as conn:
        rows = conn.execute("SELECT channel, meter_id, reason FROM rejected_reads").fetchall()
    assert rows == [("portal", "E-1", "register went backwards without a rollover")]


def test_bad_input_is_named_and_nothing_is_sent(
    client: TestClient, pool: ConnectionPool
) -> None:
    status, html = send(client, {"E-1:1.8.1": "12a", "W-1:8.0": "813"})
    assert status == 400
    assert answer(html, "E-1", "1.8.1") == (
        "invalid", "Upišite broj sa najviše tri decimale, npr. 12345,678.")
    assert 'value="12a"' in html and 'value="813"' in html  # nothing typed is lost
    for bad in ("1,2345", "-5", "1e3", "1.000,5"):
        assert answer(send(client, {"E-1:1.8.1": bad})[1], "E-1", "1.8.1")[0] == "invalid"
    status, html = send(client)
    assert status == 400 and "Upišite barem jedno stanje brojila." in html
    assert stored(pool) == []


def test_the_form_needs_its_token(client: TestClient, pool: ConnectionPool) -> None:
    resp = client.post("/ocitanje", data={"r:E-1:1.8.1": "10300"})
    assert resp.status_code == 403 and "Obrazac je istekao" in resp.text
    assert stored(pool) == []
    client.cookies.delete("portal_session")
    resp = client.get("/ocitanje", follow_redirects=False)
    assert (resp.status_code, resp.headers["location"]) == (303, "/prijava")
