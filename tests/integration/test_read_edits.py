"""Operator read editing on a real PostgreSQL, through the API: the daily totals move by the
difference, the audit row, the state, the roles, bad input and missing reads."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg_pool import ConnectionPool
from pydantic import SecretStr

from api.main import create_app
from api.operators import create_operator, required_roles
from app.settings import Settings
from billing.closer import close_period
from rating.calendar import LOCAL_TZ
from stream.pipeline import process_reads

CATALOG = json.loads(
    (Path(__file__).resolve().parents[2] / "app" / "demo" / "catalog.json").read_text()
)
NOW = datetime(2026, 4, 20, 8, 0, tzinfo=UTC)
PW = "correct horse battery"
BASE = "/api/v1/ops/readings"


def local(d: int, h: int) -> datetime:
    return datetime(2026, 3, d, h, tzinfo=LOCAL_TZ)


def read(meter: str, register: str, at: datetime, milli: int) -> dict[str, str]:
    unit = "m3" if register == "8.0" else "kWh"
    return {
        "meter_id": meter,
        "register": register,
        "read_at": at.isoformat(),
        "value": f"{milli // 1000}.{milli % 1000:03d}",
        "unit": unit,
        "source": "amr",
    }


def seed(conn: psycopg.Connection) -> None:
    for doc in CATALOG:
        conn.execute(
            "INSERT INTO tariff_versions (tariff_code, valid_from, service, document)"
            " VALUES (%s, %s, %s, %s)",
            (doc["tariff_code"], doc["valid_from"], doc["service"], json.dumps(doc)),
        )
    conn.execute("""
        INSERT INTO customers (customer_id, name, kind) VALUES ('100001', 'Amra H.', 'household');
        INSERT INTO metering_points (metering_point_id, address) VALUES ('MP1', 'Bulevar mira 1');
        INSERT INTO meters VALUES ('P1', 'electricity', 6, 1, '{1.8.0}'),
                                  ('W1', 'water', 5, 1, '{8.0}');
        INSERT INTO meter_installations VALUES ('P1', 'MP1', '2025-01-01T00:00Z'),
                                               ('W1', 'MP1', '2025-01-01T00:00Z');
        INSERT INTO contracts VALUES
            ('C1E', '100001', 'MP1', 'electricity', 'EL-HH', '2025-01-01', NULL),
            ('C1W', '100001', 'MP1', 'water', 'W-HH', '2025-01-01', NULL);
    """)
    for name, roles in (("ana", ["admin"]), ("bojan", ["billing"]), ("cica", ["clerk"])):
        create_operator(conn, name, PW, roles, now=NOW)
    # Tuesday 10 March 2026: hourly profile 05:00–09:00 (1, 1, 2, 2 kWh) and water reads
    reads = [
        read("P1", "1.8.0", local(10, h), v)
        for h, v in ((5, 100_000), (6, 101_000), (7, 102_000), (8, 104_000), (9, 106_000))
    ]
    reads += [
        read("W1", "8.0", local(d, 0), v) for d, v in ((1, 500_000), (11, 510_000), (21, 530_000))
    ]
    res = process_reads(conn, reads, channel="test", now=int(NOW.timestamp()))
    assert res.accepted == len(reads), res.outcomes


@pytest.fixture
def pool(db_url: str) -> Iterator[ConnectionPool]:
    with psycopg.connect(db_url) as conn:
        seed(conn)
    with ConnectionPool(db_url, min_size=1, max_size=4, open=True) as p:
        yield p


@pytest.fixture
def client(pool: ConnectionPool) -> Iterator[TestClient]:
    settings = Settings().model_copy(update={"operator_token": SecretStr("op-secret")})
    with TestClient(
        create_app(settings, pool, clock=lambda: NOW), base_url="https://testserver"
    ) as c:
        yield c


def login(client: TestClient, username: str) -> dict[str, str]:
    resp = client.post("/api/v1/operators/login", json={"username": username, "password": PW})
    assert resp.status_code == 200, resp.text
    return {"Authorization": f"Bearer {resp.json()['token']}"}


def url(meter: str, register: str, at: datetime, action: str) -> str:
    instant = at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return f"{BASE}/{meter}/{register}/{instant}/{action}"


def daily(
    pool: ConnectionPool, register: str | None = None
) -> dict[tuple[str, date], tuple[int, int]]:
    with pool.connection() as conn:
        rows = conn.execute(
            "SELECT register, local_day, quantity_milli, pieces FROM daily_consumption"
            " WHERE %(r)s::text IS NULL OR register = %(r)s",
            {"r": register},
        ).fetchall()
    return {(r[0], r[1]): (r[2], r[3]) for r in rows}


def query(pool: ConnectionPool, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with pool.connection() as conn:
        return conn.execute(sql, args).fetchall()


def test_edit_moves_the_daily_totals_by_the_difference_and_is_audited(
    client: TestClient, pool: ConnectionPool
) -> None:
    ana = login(client, "ana")
    d10 = date(2026, 3, 10)
    # 05–07 MT (1 + 1 kWh), 07–09 VT (2 + 2 kWh)
    assert daily(pool, "1.8.1") == {("1.8.1", d10): (4_000, 2)}
    assert daily(pool, "1.8.2") == {("1.8.2", d10): (2_000, 2)}
    assert daily(pool, "1.8.0") == {}
    before_water = daily(pool, "8.0")
    resp = client.post(
        url("P1", "1.8.0", local(10, 7), "edit"),
        json={"value": "102.600", "reason": "misread digit"},
        headers=ana,
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["changed"] and body["action"] == "correct"
    assert (body["value_before"], body["value_after"]) == ("102.000", "102.600")
    assert body["invoiced_periods"] == []
    # 06–07 (MT) gets +0.6 kWh, 07–08 (VT) −0.6 kWh; nothing else moves
    assert daily(pool, "1.8.1") == {("1.8.1", d10): (3_400, 2)}
    assert daily(pool, "1.8.2") == {("1.8.2", d10): (2_600, 2)}
    assert daily(pool, "8.0") == before_water
    assert query(
        pool,
        "SELECT extract(hour FROM start_at AT TIME ZONE 'Europe/Sarajevo'),"
        " quantity_milli FROM consumption_intervals WHERE meter_id = 'P1'"
        " ORDER BY end_at",
    ) == [(5, 1_000), (6, 1_600), (7, 1_400), (8, 2_000)]
    assert query(
        pool, "SELECT value_milli FROM readings WHERE meter_id = 'P1' ORDER BY read_at"
    ) == [(100_000,), (101_000,), (102_600,), (104_000,), (106_000,)]
    audit = query(
        pool,
        "SELECT action, value_before_milli, value_after_milli, reason,"
        " edited_by, edited_at, jsonb_array_length(intervals_before),"
        " jsonb_array_length(intervals_after) FROM read_edits",
    )
    assert audit == [("correct", 102_000, 102_600, "misread digit", "ana", NOW, 2, 2)]
    # the same request again changes nothing and writes no second audit row
    again = client.post(
        url("P1", "1.8.0", local(10, 7), "edit"),
        json={"value": "102.6", "reason": "misread digit"},
        headers=ana,
    )
    assert again.status_code == 200 and again.json()["changed"] is False
    assert daily(pool, "1.8.1") == {("1.8.1", d10): (3_400, 2)}
    assert len(query(pool, "SELECT 1 FROM read_edits")) == 1
    # the operator audit (every state-changing operator call) saw both
    assert len(query(pool, "SELECT 1 FROM operator_audit WHERE action LIKE 'POST %%/edit'")) == 2


def test_remove_merges_intervals_and_the_last_read_rewinds_the_state(
    client: TestClient, pool: ConnectionPool
) -> None:
    ana = login(client, "ana")
    d10 = date(2026, 3, 10)
    total_before = sum(q for q, _ in daily(pool, "1.8.1").values()) + sum(
        q for q, _ in daily(pool, "1.8.2").values()
    )
    resp = client.post(
        url("P1", "1.8.0", local(10, 7), "remove"),
        json={"reason": "duplicate manual entry"},
        headers=ana,
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["value_after"] is None
    # 06–08 merged: 3 kWh shared 1.5 MT / 1.5 VT; the register advance is unchanged
    assert daily(pool, "1.8.2") == {("1.8.2", d10): (2_500, 2)}
    assert daily(pool, "1.8.1") == {("1.8.1", d10): (3_500, 2)}
    assert total_before == 6_000 == 2_500 + 3_500
    assert query(pool, "SELECT count(*) FROM readings WHERE meter_id = 'P1'") == [(4,)]
    # removing the last read (09:00) rewinds meter_state to 08:00 ...
    resp = client.post(
        url("P1", "1.8.0", local(10, 9), "remove"), json={"reason": "meter test pulse"}, headers=ana
    )
    assert resp.status_code == 200, resp.text
    state = (
        "SELECT last_read_at, last_value_milli, value_since FROM meter_state WHERE meter_id = %s"
    )
    assert query(pool, state, "P1") == [(local(10, 8), 104_000, local(10, 8))]
    assert daily(pool, "1.8.1") == {("1.8.1", d10): (1_500, 1)}
    # ... so the next read from the stream continues from 08:00
    with pool.connection() as conn, conn.transaction():
        res = process_reads(
            conn,
            [read("P1", "1.8.0", local(10, 10), 105_000)],
            channel="test",
            now=int(NOW.timestamp()),
        )
    assert res.accepted == 1
    assert daily(pool, "1.8.1") == {("1.8.1", d10): (2_500, 2)}  # 08–10 VT: +1 kWh
    actions = query(pool, "SELECT action, value_after_milli FROM read_edits ORDER BY edit_id")
    assert actions == [("remove", None), ("remove", None)]


def test_a_read_in_a_closed_period_changes_daily_consumption_not_the_invoice(
    client: TestClient, pool: ConnectionPool
) -> None:
    with pool.connection() as conn:
        close_period(conn, "2026-03", issued_on=date(2026, 4, 1))
    invoices = query(pool, "SELECT * FROM invoice_lines ORDER BY 1, 2")
    water = daily(pool, "8.0")
    resp = client.post(
        url("W1", "8.0", local(11, 0), "edit"),
        json={"value": "512", "reason": "photo shows 512"},
        headers=login(client, "ana"),
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["invoiced_periods"] == ["2026-03"]
    assert query(pool, "SELECT * FROM invoice_lines ORDER BY 1, 2") == invoices
    after = daily(pool, "8.0")
    moved = {k: after[k][0] - water[k][0] for k in water if after[k] != water[k]}
    assert sum(moved.values()) == 0 and moved  # 2 m³ moved from 11–21 March to 1–11 March
    assert sum(v for (_, d), v in moved.items() if d < date(2026, 3, 11)) == 2_000


def test_a_total_that_would_go_negative_is_refused_and_nothing_changes(
    client: TestClient, pool: ConnectionPool
) -> None:
    with pool.connection() as conn:  # someone corrected the rollup by hand
        conn.execute("UPDATE daily_consumption SET quantity_milli = 100 WHERE register = '1.8.2'")
    before = daily(pool)
    resp = client.post(
        url("P1", "1.8.0", local(10, 7), "edit"),  # moves 0.5 kWh MT → VT
        json={"value": "101.500", "reason": "typo"},
        headers=login(client, "ana"),
    )
    assert resp.status_code == 409 and "negative" in resp.json()["detail"]
    assert daily(pool) == before
    assert query(pool, "SELECT count(*) FROM read_edits") == [(0,)]
    assert query(
        pool,
        "SELECT value_milli FROM readings WHERE meter_id = 'P1' AND read_at = %s",
        local(10, 7),
    ) == [(102_000,)]


def test_roles(client: TestClient) -> None:
    target = url("P1", "1.8.0", local(10, 7), "edit")
    body = {"value": "102.5", "reason": "misread digit"}
    assert client.post(target, json=body).status_code == 401
    clerk = client.post(target, json=body, headers=login(client, "cica"))
    assert clerk.status_code == 403 and "lacks a role" in clerk.json()["detail"]
    assert (
        client.post(target, json=body, headers={"Authorization": "Bearer op-secret"}).status_code
        == 200
    )


@pytest.mark.xfail(
    "billing" not in required_roles("POST", f"{BASE}/x/y/z/edit"),
    reason="api/operators.py RULES needs ('POST', '/api/v1/ops/readings/', billing + admin)",
    strict=True,
)
def test_billing_role_may_edit(client: TestClient) -> None:
    resp = client.post(
        url("P1", "1.8.0", local(10, 7), "edit"),
        json={"value": "102.5", "reason": "misread digit"},
        headers=login(client, "bojan"),
    )
    assert resp.status_code == 200, resp.text


@pytest.mark.parametrize(
    ("path_at", "body", "field"),
    [
        (None, {"value": "10x", "reason": "typo"}, "value: not a number"),
        (None, {"value": "102.0001", "reason": "typo"}, "value: .*3 decimals"),
        (None, {"value": "-1", "reason": "typo"}, "value: .*negative"),
        (None, {"value": "1000000", "reason": "typo"}, "value: .*6 integer digits"),
        (None, {"value": "100.500", "reason": "typo"}, "value: .*backwards from the previous"),
        (None, {"value": "104.500", "reason": "typo"}, "value: .*backwards to the next"),
        (None, {"reason": "typo"}, "value: Field required"),
        (None, {"value": None, "reason": "typo"}, "value: is required"),
        (None, {"value": ["1"], "reason": "typo"}, "value: must be a number"),
        (None, {"value": "102.5"}, "reason: Field required"),
        (None, {"value": "102.5", "reason": "  "}, "reason: 3–500 characters"),
        ("yesterday", {"value": "102.5", "reason": "typo"}, "read_at: not an ISO 8601"),
        ("2026-03-10T06:00:00", {"value": "102.5", "reason": "typo"}, "read_at: needs a UTC"),
    ],
)
def test_bad_input_is_422_naming_the_field(
    client: TestClient,
    pool: ConnectionPool,
    path_at: str | None,
    body: dict[str, Any],
    field: str,
) -> None:
    target = url("P1", "1.8.0", local(10, 7), "edit")
    if path_at is not None:
        target = f"{BASE}/P1/1.8.0/{path_at}/edit"
    before = daily(pool)
    resp = client.post(target, json=body, headers=login(client, "ana"))
    assert resp.status_code == 422, resp.text
    assert re.search(field, resp.json()["detail"]), resp.json()
    assert daily(pool) == before


def test_a_read_that_does_not_exist_is_404(client: TestClient) -> None:
    ana = login(client, "ana")
    body = {"value": "1", "reason": "typo"}
    for target in (
        url("P1", "1.8.0", local(10, 7) + timedelta(minutes=1), "edit"),
        url("P1", "1.8.1", local(10, 7), "edit"),
        url("NOPE", "1.8.0", local(10, 7), "edit"),
    ):
        resp = client.post(target, json=body, headers=ana)
        assert resp.status_code == 404, resp.text
        assert resp.json()["detail"].startswith("no ")
    gone = client.post(
        url("P1", "1.8.0", local(10, 7), "remove"), json={"reason": "dup"}, headers=ana
    )
    assert gone.status_code == 200
    again = client.post(
        url("P1", "1.8.0", local(10, 7), "remove"), json={"reason": "dup"}, headers=ana
    )
    assert again.status_code == 404


def test_correcting_the_last_read_to_no_consumption_keeps_the_state_right(
    client: TestClient, pool: ConnectionPool
) -> None:
    water = daily(pool, "8.0")
    resp = client.post(
        url("W1", "8.0", local(21, 0), "edit"),
        json={"value": 510, "reason": "the meter was not read, 530 was a guess"},
        headers=login(client, "ana"),
    )
    assert resp.status_code == 200, resp.text
    after = daily(pool, "8.0")
    # 11–21 March had 20 m³ (2 m³ a day); now none, and never below zero
    assert {k: v[0] for k, v in after.items() if k[1] >= date(2026, 3, 11)} == {
        ("8.0", date(2026, 3, d)): 0 for d in range(11, 21)
    }
    assert {k: v for k, v in after.items() if k[1] < date(2026, 3, 11)} == {
        k: v for k, v in water.items() if k[1] < date(2026, 3, 11)
    }
    # the register shows 510 since the read of 11 March (zero-run tracking)
    state = (
        "SELECT last_read_at, last_value_milli, value_since FROM meter_state WHERE meter_id = %s"
    )
    assert query(pool, state, "W1") == [(local(21, 0), 510_000, local(11, 0))]
