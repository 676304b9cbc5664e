"""Customer portal over HTTP on a real PostgreSQL: login, sessions, summary, invoices.

Invoices and payments are seeded with plain SQL; every expected figure below is worked
out by hand in the comments.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg_pool import ConnectionPool
from pydantic import SecretStr

from api.main import create_app
from api.security import hash_password, register_gateway, token_sha256
from app.settings import Settings
from billing.accounts import allocate_fifo, amount_with_vat, change_percent, invoice_status

PW_A, PW_B = "Lozinka-A1!", "Lozinka-B2!"
START = datetime(2026, 4, 20, 8, 0, tzinfo=UTC)

# (service, metering point, component, register, quantity_milli, unit, price_micro, amount_fen)
FEB_A = [  # 2026-02, customer A
    ("electricity", "MP-A", "energy_vt_higher", "1.8.1", 200_000, "kWh", 157_800, 3156),
    ("electricity", "MP-A", "energy_mt_higher", "1.8.2", 100_000, "kWh", 78_900, 789),
    ("electricity", "MP-A", "metering_point_fee", None, 1000, "month", 3_500_000, 350),
    ("water", "MP-A", "water_sewage", "8.0", 10_000, "m3", 1_068_376, 1068),  # 1068.376
    ("water", "MP-A", "metering_point_fee", None, 1000, "month", 2_500_000, 250),
    ("waste", "MP-A", "waste_household", None, 1000, "month", 9_000_000, 900),
]  # net 6513, VAT 17 % = 1107.21 → 1107, total 7620
MAR_A = [  # 2026-03, customer A
    ("electricity", "MP-A", "energy_vt_higher", "1.8.1", 180_000, "kWh", 157_800, 2840),  # .4
    ("electricity", "MP-A", "energy_mt_higher", "1.8.2", 120_000, "kWh", 78_900, 947),  # .8
    ("electricity", "MP-A", "metering_point_fee", None, 1000, "month", 3_500_000, 350),
    ("water", "MP-A", "water_sewage", "8.0", 12_000, "m3", 1_068_376, 1282),  # 1282.05
    ("water", "MP-A", "metering_point_fee", None, 1000, "month", 2_500_000, 250),
    ("waste", "MP-A", "waste_household", None, 1000, "month", 9_000_000, 900),
]  # net 6569, VAT 1116.73 → 1117, total 7686
FEB_B = [("electricity", "MP-B", "metering_point_fee", None, 1000, "month", 3_500_000, 350)]
APR_B = [("electricity", "MP-B", "energy_vt_lower", "1.8.1", 50_000, "kWh", 126_200, 631)]


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def insert_invoice(conn: psycopg.Connection, number: str, customer: str, period: str,
                   issued: str, due: str, lines: list[tuple]) -> None:
    net = sum(ln[7] for ln in lines)
    vat = (net * 17 + 50) // 100  # VAT 17 %, half up (amounts here are positive)
    conn.execute(
        "INSERT INTO invoices (invoice_number, year, seq, customer_id, period, issued_on, due_on,"
        " net_fen, vat_fen, total_fen, payment_reference)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (number, int(number[:4]), int(number[5:]), customer, period, issued, due, net, vat,
         net + vat, f"REF-{number}"),
    )
    for no, (svc, mp, comp, reg, qty, unit, price, amount) in enumerate(lines, 1):
        conn.execute(
            "INSERT INTO invoice_lines VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,17)",
            (number, no, svc, mp, comp, reg, f"{comp} {mp}", qty, unit, price, amount),
        )
    conn.execute("INSERT INTO invoice_vat VALUES (%s, 17, %s, %s)", (number, net, vat))


def pay(conn: psycopg.Connection, pid: str, customer: str, on: str, fen: int) -> None:
    conn.execute(
        "INSERT INTO payments (payment_id, customer_id, paid_on, amount_fen, channel)"
        " VALUES (%s, %s, %s, %s, 'bank')",
        (pid, customer, on, fen),
    )


def seed(conn: psycopg.Connection) -> None:
    conn.execute(
        "INSERT INTO customers (customer_id, name, kind, password_hash) VALUES"
        " ('100001', 'Amra H.', 'household', %s), ('100002', 'Boris K.', 'household', %s),"
        " ('100003', 'Bez Lozinke', 'household', NULL)",
        (hash_password(PW_A), hash_password(PW_B)),
    )
    conn.execute("INSERT INTO metering_points (metering_point_id, address) VALUES"
                 " ('MP-A', 'Ulica A 1'), ('MP-B', 'Ulica B 2')")
    insert_invoice(conn, "2026-000001", "100001", "2026-02", "2026-03-02", "2026-03-17", FEB_A)
    insert_invoice(conn, "2026-000002", "100002", "2026-02", "2026-03-02", "2026-03-17", FEB_B)
    insert_invoice(conn, "2026-000003", "100001", "2026-03", "2026-04-02", "2026-04-17", MAR_A)
    insert_invoice(conn, "2026-000004", "100002", "2026-04", "2026-05-02", "2026-05-17", APR_B)
    pay(conn, "P-A1", "100001", "2026-03-10", 5000)
    pay(conn, "P-A2", "100001", "2026-03-20", 2620)
    pay(conn, "P-B1", "100002", "2026-04-25", 999)


@pytest.fixture
def pool(db_url: str) -> Iterator[ConnectionPool]:
    with psycopg.connect(db_url) as conn:
        seed(conn)
    with ConnectionPool(db_url, min_size=1, max_size=4, open=True) as p:
        yield p


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


def make_client(pool: ConnectionPool, clock: Clock, **settings: object) -> TestClient:
    app = create_app(Settings(**settings), pool, clock=clock)  # type: ignore[arg-type]
    return TestClient(app, base_url="https://testserver")


def login(client: TestClient, customer: str, password: str) -> dict:
    resp = client.post("/api/v1/portal/login", json={"customer_id": customer, "password": password})
    assert resp.status_code == 200, resp.text
    return resp.json()


# ---- login, sessions -------------------------------------------------------------------


def test_login_sets_a_hashed_session_and_wrong_logins_look_identical(
    pool: ConnectionPool, clock: Clock
) -> None:
    with make_client(pool, clock) as client:
        resp = client.post("/api/v1/portal/login",
                           json={"customer_id": "100001", "password": PW_A})
        assert resp.status_code == 200
        assert resp.json() == {"customer_id": "100001", "name": "Amra H."}
        cookie = resp.headers["set-cookie"]
        for attr in ("portal_session=", "HttpOnly", "Secure", "SameSite=lax", "Path=/"):
            assert attr in cookie
        token = client.cookies["portal_session"]
        assert len(token) == 43
        failures = [
            client.post("/api/v1/portal/login", json={"customer_id": c, "password": p})
            for c, p in (("100001", "wrong"), ("999999", PW_A), ("100003", "x"),
                         ("not-an-id", PW_A), ("100001", PW_B))
        ]
    assert {r.status_code for r in failures} == {401}
    assert {r.content for r in failures} == {b'{"detail":"wrong customer ID or password"}'}
    assert all("set-cookie" not in r.headers for r in failures)
    with pool.connection() as conn:
        rows = conn.execute("SELECT session_sha256, customer_id, created_at, expires_at"
                            " FROM portal_sessions").fetchall()
    assert rows == [(token_sha256(token), "100001", START, START + timedelta(hours=12))]


def test_unknown_customer_costs_as_much_as_a_wrong_password(
    pool: ConnectionPool, clock: Clock
) -> None:
    def timed(customer: str) -> float:
        t0 = time.perf_counter()
        r = client.post("/api/v1/portal/login", json={"customer_id": customer, "password": "x"})
        assert r.status_code == 401
        return time.perf_counter() - t0

    with make_client(pool, clock) as client:
        timed("999999")  # warm up (the dummy hash is built once)
        wrong = statistics.median(timed("100001") for _ in range(5))
        unknown = statistics.median(timed("999999") for _ in range(5))
    assert unknown > wrong / 2  # an argon2 verification on both paths, not a short cut


def test_insecure_cookie_only_when_configured(pool: ConnectionPool, clock: Clock) -> None:
    with make_client(pool, clock, cookie_secure=False) as client:
        resp = client.post("/api/v1/portal/login", json={"customer_id": "100001", "password": PW_A})
    assert "Secure" not in resp.headers["set-cookie"]
    assert "HttpOnly" in resp.headers["set-cookie"]


def test_logout_deletes_the_session(pool: ConnectionPool, clock: Clock) -> None:
    with make_client(pool, clock) as client:
        login(client, "100001", PW_A)
        old = client.cookies["portal_session"]
        assert client.get("/api/v1/portal/summary").status_code == 200
        resp = client.post("/api/v1/portal/logout")
        assert resp.status_code == 204
        client.cookies.set("portal_session", old)  # a stolen copy of the old cookie
        resp = client.get("/api/v1/portal/summary")
        assert resp.status_code == 401
        assert resp.json() == {"detail": "not logged in or the session has expired"}
    with pool.connection() as conn:
        assert conn.execute("SELECT count(*) FROM portal_sessions").fetchone() == (0,)


def test_idle_and_absolute_timeouts(pool: ConnectionPool, clock: Clock) -> None:
    with make_client(pool, clock, session_idle_minutes=30, session_absolute_hours=1) as client:
        login(client, "100001", PW_A)
        for minutes in (25, 50):  # each call within 30 min of the previous one
            clock.now = START + timedelta(minutes=minutes)
            assert client.get("/api/v1/portal/invoices").status_code == 200
        clock.now = START + timedelta(minutes=61)  # still active, but past the absolute hour
        assert client.get("/api/v1/portal/invoices").status_code == 401

        clock.now = START + timedelta(hours=2)
        login(client, "100001", PW_A)  # a new session on each login
        clock.now += timedelta(minutes=29, seconds=59)
        assert client.get("/api/v1/portal/invoices").status_code == 200
        clock.now += timedelta(minutes=30)  # idle for exactly 30 minutes
        assert client.get("/api/v1/portal/invoices").status_code == 401
        clock.now += timedelta(seconds=1)
        assert client.get("/api/v1/portal/invoices").status_code == 401


def test_every_portal_call_needs_a_session(pool: ConnectionPool, clock: Clock) -> None:
    with make_client(pool, clock) as client:
        for path in ("summary", "consumption", "invoices", "invoices/2026-000001"):
            resp = client.get(f"/api/v1/portal/{path}")
            assert resp.status_code == 401, path
            assert resp.headers["content-security-policy"].startswith("default-src 'self'")
        assert client.post("/api/v1/portal/logout").status_code == 401
        client.cookies.set("portal_session", "forged")
        assert client.get("/api/v1/portal/summary").status_code == 401


# ---- account figures -------------------------------------------------------------------


def test_summary_figures_worked_out_by_hand(pool: ConnectionPool, clock: Clock) -> None:
    with make_client(pool, clock) as client:
        login(client, "100001", PW_A)
        body = client.get("/api/v1/portal/summary").json()
    # balance: invoices 76.20 + 76.86 − payments 50.00 − 26.20 = 76.86 (owed)
    # electricity 03: net 28.40 + 9.47 + 3.50 = 41.37 → ×1.17 = 48.4029 → 48.40; 300 kWh
    # electricity 02: net 31.56 + 7.89 + 3.50 = 42.95 → 50.2515 → 50.25; 300 kWh
    # water 03: 12.82 + 2.50 = 15.32 → 17.9244 → 17.92; 12 m3. water 02: 13.18 → 15.42
    # waste: 9.00 → 10.53 both months
    # change: el (48.40 − 50.25) / 50.25 = −3.68 % → −3.7; water (17.92 − 15.42) / 15.42
    # = 16.21 % → 16.2; waste 0.0
    assert body == {
        "customer_id": "100001",
        "name": "Amra H.",
        "currency": "BAM",
        "balance": "76.86",
        "last_payment": {"date": "2026-03-20", "amount": "26.20"},
        "last_month": {"period": "2026-03", "services": {
            "electricity": {"quantity": "300.000", "unit": "kWh", "amount": "48.40"},
            "water": {"quantity": "12.000", "unit": "m3", "amount": "17.92"},
            "waste": {"quantity": "1.000", "unit": "month", "amount": "10.53"},
        }},
        "previous_month": {"period": "2026-02", "services": {
            "electricity": {"quantity": "300.000", "unit": "kWh", "amount": "50.25"},
            "water": {"quantity": "10.000", "unit": "m3", "amount": "15.42"},
            "waste": {"quantity": "1.000", "unit": "month", "amount": "10.53"},
        }},
        "change_percent": {"electricity": -3.7, "water": 16.2, "waste": 0.0},
    }
    # the service amounts round per service: 48.40 + 17.92 + 10.53 = 76.85 ≠ total 76.86


def test_summary_of_a_customer_without_invoices(pool: ConnectionPool, clock: Clock) -> None:
    with pool.connection() as conn:
        conn.execute("UPDATE customers SET password_hash = %s WHERE customer_id = '100003'",
                     (hash_password("x-y-z"),))
    with make_client(pool, clock) as client:
        login(client, "100003", "x-y-z")
        body = client.get("/api/v1/portal/summary").json()
        assert client.get("/api/v1/portal/invoices").json() == []
        assert client.get("/api/v1/portal/consumption").json() == {"series": []}
    assert body["balance"] == "0.00"
    assert body["last_payment"] is None
    assert body["last_month"] is None and body["previous_month"] is None
    assert body["change_percent"] == {}


def test_consumption_series(pool: ConnectionPool, clock: Clock) -> None:
    with make_client(pool, clock) as client:
        login(client, "100001", PW_A)
        full = client.get("/api/v1/portal/consumption?months=24").json()["series"]
        one = client.get("/api/v1/portal/consumption", params={"months": 1}).json()["series"]
        default = client.get("/api/v1/portal/consumption").json()["series"]
        bad = [client.get("/api/v1/portal/consumption", params={"months": m})
               for m in (0, 61, "x")]
    assert [(e["period"], e["service"]) for e in full] == [
        ("2026-02", "electricity"), ("2026-02", "water"), ("2026-02", "waste"),
        ("2026-03", "electricity"), ("2026-03", "water"), ("2026-03", "waste")]
    assert full[1] == {"period": "2026-02", "service": "water", "quantity": "10.000",
                       "unit": "m3", "amount": "15.42"}
    assert one == full[3:]
    assert default == full
    assert [r.status_code for r in bad] == [422, 422, 422]
    assert all(r.json()["detail"].startswith("months:") for r in bad)


def test_invoice_statuses_follow_fifo_payments_and_the_clock(
    pool: ConnectionPool, clock: Clock
) -> None:
    with make_client(pool, clock) as client:
        login(client, "100001", PW_A)
        # 04-20: 76.20 paid covers 2026-000001 exactly; 2026-000003 was due 04-17
        listing = client.get("/api/v1/portal/invoices").json()
        assert listing == [
            {"number": "2026-000003", "period": "2026-03", "issued_on": "2026-04-02",
             "due_on": "2026-04-17", "total": "76.86", "status": "overdue"},
            {"number": "2026-000001", "period": "2026-02", "issued_on": "2026-03-02",
             "due_on": "2026-03-17", "total": "76.20", "status": "paid"},
        ]
        clock.now = datetime(2026, 4, 10, 8, 0, tzinfo=UTC)
        login(client, "100001", PW_A)
        assert [i["status"] for i in client.get("/api/v1/portal/invoices").json()] == [
            "open", "paid"]
        with pool.connection() as conn:
            pay(conn, "P-A3", "100001", "2026-04-09", 1000)
        assert [i["status"] for i in client.get("/api/v1/portal/invoices").json()] == [
            "partly_paid", "paid"]
        # the due day itself is not overdue (Sarajevo date: 04-17 22:30 UTC is already 04-18 local)
        clock.now = datetime(2026, 4, 17, 21, 0, tzinfo=UTC)
        login(client, "100001", PW_A)
        assert client.get("/api/v1/portal/invoices").json()[0]["status"] == "partly_paid"
        clock.now = datetime(2026, 4, 17, 22, 30, tzinfo=UTC)
        login(client, "100001", PW_A)
        assert client.get("/api/v1/portal/invoices").json()[0]["status"] == "overdue"
        with pool.connection() as conn:
            pay(conn, "P-A4", "100001", "2026-04-18", 6686)
        assert client.get("/api/v1/portal/invoices").json()[0]["status"] == "paid"


def test_invoice_detail(pool: ConnectionPool, clock: Clock) -> None:
    with make_client(pool, clock) as client:
        login(client, "100001", PW_A)
        body = client.get("/api/v1/portal/invoices/2026-000003").json()
    assert {k: body[k] for k in ("number", "period", "net", "vat", "total", "due_on",
                                 "payment_reference", "status")} == {
        "number": "2026-000003", "period": "2026-03", "net": "65.69", "vat": "11.17",
        "total": "76.86", "due_on": "2026-04-17", "payment_reference": "REF-2026-000003",
        "status": "overdue"}
    assert body["vat_rows"] == [{"vat_rate": "17", "base": "65.69", "vat": "11.17"}]
    assert len(body["lines"]) == 6
    assert body["lines"][0] == {
        "service": "electricity", "metering_point_id": "MP-A",
        "description": "energy_vt_higher MP-A", "register": "1.8.1", "quantity": "180.000",
        "unit": "kWh", "unit_price": "0.1578", "amount": "28.40", "vat_rate": "17"}
    assert body["lines"][3]["unit_price"] == "1.068376"
    assert body["lines"][2]["register"] is None


def test_customers_never_see_each_other(pool: ConnectionPool, clock: Clock) -> None:
    with make_client(pool, clock) as a, make_client(pool, clock) as b:
        login(a, "100001", PW_A)
        login(b, "100002", PW_B)
        sa = a.get("/api/v1/portal/summary").json()
        sb = b.get("/api/v1/portal/summary").json()
        assert (sa["name"], sa["balance"], sa["last_month"]["period"]) == (
            "Amra H.", "76.86", "2026-03")
        # B: 4.10 + 7.38 (6.31 × 1.17 = 7.3827) − 9.99 = 1.49; last payment 04-25
        assert (sb["name"], sb["balance"], sb["last_payment"]) == (
            "Boris K.", "1.49", {"date": "2026-04-25", "amount": "9.99"})
        assert sb["last_month"]["period"] == "2026-04"
        assert sb["previous_month"] is None  # B has no invoice for 2026-03
        assert sb["change_percent"] == {}
        series_a = a.get("/api/v1/portal/consumption").json()["series"]
        assert {e["period"] for e in series_a} == {"2026-02", "2026-03"}
        series_b = b.get("/api/v1/portal/consumption").json()["series"]
        assert [(e["period"], e["service"], e["quantity"]) for e in series_b] == [
            ("2026-02", "electricity", "0.000"), ("2026-04", "electricity", "50.000")]
        assert [i["number"] for i in a.get("/api/v1/portal/invoices").json()] == [
            "2026-000003", "2026-000001"]
        assert [i["number"] for i in b.get("/api/v1/portal/invoices").json()] == [
            "2026-000004", "2026-000002"]
        foreign = a.get("/api/v1/portal/invoices/2026-000002")
        unknown = a.get("/api/v1/portal/invoices/2026-999999")
        assert foreign.status_code == unknown.status_code == 404
        assert foreign.content == unknown.content == b'{"detail":"no such invoice"}'
        assert b.get("/api/v1/portal/invoices/2026-000001").status_code == 404
        assert b.get("/api/v1/portal/invoices/2026-000002").status_code == 200


# ---- pure helpers of billing.accounts ---------------------------------------------------


def test_account_helpers() -> None:
    assert amount_with_vat(4137, Decimal("17")) == 4840  # 4840.29
    assert amount_with_vat(50, Decimal("17")) == 59  # 58.5 → 59 (half up)
    assert amount_with_vat(-50, Decimal("17")) == -59
    assert allocate_fifo([7620, 7686, 100], 7620 + 1000) == [7620, 1000, 0]
    assert allocate_fifo([100, 200], 10_000) == [100, 200]
    assert allocate_fifo([100], -5) == [0]
    d = datetime(2026, 4, 17).date()
    assert invoice_status(100, 100, d, d) == "paid"
    assert invoice_status(100, 0, d, d) == "open"
    assert invoice_status(100, 10, d, d) == "partly_paid"
    assert invoice_status(100, 10, d, d + timedelta(days=1)) == "overdue"
    assert change_percent(4840, 5025) == -3.7
    assert change_percent(1053, 1053) == 0.0
    assert change_percent(3, 8) == -62.5
    assert change_percent(100, 0) is None
    assert change_percent(100, None) is None


# ---- the whole way: reads over HTTP → close → portal -------------------------------------


def test_reads_close_and_portal_end_to_end(db_url: str) -> None:
    catalog = Path(__file__).resolve().parents[2] / "app" / "demo" / "catalog.json"
    with psycopg.connect(db_url) as conn:
        for doc in json.loads(catalog.read_text()):
            conn.execute(
                "INSERT INTO tariff_versions (tariff_code, valid_from, service, document)"
                " VALUES (%s, %s, %s, %s)",
                (doc["tariff_code"], doc["valid_from"], doc["service"], json.dumps(doc)),
            )
        conn.execute("INSERT INTO customers (customer_id, name, kind, password_hash)"
                     " VALUES ('100005', 'Cvijeta D.', 'household', %s)", (hash_password(PW_A),))
        conn.execute("INSERT INTO metering_points (metering_point_id, address, household_members)"
                     " VALUES ('MP1', 'Ulica C 3', 3)")
        conn.execute("INSERT INTO meters VALUES ('E1', 'electricity', 6, 1, '{1.8.1,1.8.2}')")
        conn.execute("INSERT INTO meter_installations VALUES ('E1', 'MP1', '2025-01-01T00:00Z')")
        conn.execute("INSERT INTO contracts VALUES ('C1', '100005', 'MP1', 'electricity', 'EL-HH',"
                     " '2025-01-01', NULL), ('C2', '100005', 'MP1', 'waste', 'WA-HH',"
                     " '2025-01-01', NULL)")
        gateway_token = register_gateway(conn, "gw-1")
    reads = [
        {"meter_id": "E1", "register": reg, "read_at": at, "value": value, "unit": "kWh"}
        for reg, at, value in (
            ("1.8.1", "2026-03-01T00:00:00+01:00", "100.000"),
            ("1.8.2", "2026-03-01T00:00:00+01:00", "50.000"),
            ("1.8.1", "2026-04-01T00:00:00+02:00", "400.000"),
            ("1.8.2", "2026-04-01T00:00:00+02:00", "150.000"),
        )
    ]
    settings = Settings().model_copy(update={"operator_token": SecretStr("op-secret")})
    clock = Clock(datetime(2026, 4, 2, 8, 0, tzinfo=UTC))
    with ConnectionPool(db_url, min_size=1, max_size=4, open=True) as pool:
        app = create_app(settings, pool, clock=clock)
        with TestClient(app, base_url="https://testserver") as client:
            resp = client.post("/api/v1/readings", json=reads,
                               headers={"Authorization": f"Bearer {gateway_token}"})
            assert resp.json()["accepted"] == 4
            operator = {"Authorization": "Bearer op-secret"}
            early = client.post("/api/v1/billing/close", json={"period": "2026-04"},
                                headers=operator)
            assert early.status_code == 422
            assert "has not ended" in early.json()["detail"]
            closed = client.post("/api/v1/billing/close", json={"period": "2026-03"},
                                 headers=operator)
            assert closed.status_code == 200, closed.text
            # VT 300 kWh × 0.1578 = 47.34, MT 100 kWh × 0.0789 = 7.89, fee 3.50, waste 9.00
            # net 67.73, VAT 11.5141 → 11.51, total 79.24
            assert closed.json() == {
                "period": "2026-03", "invoices_created": 1, "invoices_existing": 0,
                "net": "67.73", "vat": "11.51", "total": "79.24", "unbilled_days": 0,
                "skipped": {}}
            again = client.post("/api/v1/billing/close", json={"period": "2026-03"},
                                headers=operator).json()
            assert (again["invoices_created"], again["invoices_existing"]) == (0, 1)

            login(client, "100005", PW_A)
            summary = client.get("/api/v1/portal/summary").json()
            listing = client.get("/api/v1/portal/invoices").json()
            detail = client.get(f"/api/v1/portal/invoices/{listing[0]['number']}").json()
    assert summary["balance"] == "79.24"
    # electricity 47.34 + 7.89 + 3.50 = 58.73 → ×1.17 = 68.7141 → 68.71; waste 10.53
    assert summary["last_month"] == {"period": "2026-03", "services": {
        "electricity": {"quantity": "400.000", "unit": "kWh", "amount": "68.71"},
        "waste": {"quantity": "1.000", "unit": "month", "amount": "10.53"}}}
    assert summary["previous_month"] is None
    assert [(i["issued_on"], i["due_on"], i["total"], i["status"]) for i in listing] == [
        ("2026-04-02", "2026-04-17", "79.24", "open")]
    assert [(ln["register"], ln["quantity"], ln["amount"]) for ln in detail["lines"]] == [
        ("1.8.1", "300.000", "47.34"), ("1.8.2", "100.000", "7.89"), (None, "1.000", "3.50"),
        (None, "1.000", "9.00")]
