"""The customer's live month (snapshot JSON, server-sent events, /uzivo) and the operator
screens, on a real PostgreSQL with reads pushed through ``stream.pipeline.process_reads``.

Seed (clock 2026-04-20 08:00 UTC = day 20 of 30 in April, lower season):
customer A (100001): MP-A electricity EL-HH (meter E1, register 1.8.1) + waste WA-HH;
customer B (100002): MP-B electricity EL-HH (meter E2, no reads).
A's reads 100 → 190 kWh (1 → 10 April): 90 kWh × 0.1262 KM = 11.358 KM → 11.36 KM.
Fees pro-rated 20/30: metering point 3.50 → 2.3333 → 2.33; waste 9.00 → 6.00.
A: net 11.36 + 2.33 + 6.00 = 19.69, VAT 17 % 3.3473 → 3.35, total 23.04.
After 240 kWh on 15 April: 140 kWh × 0.1262 = 17.668 → 17.67; net 26.00, VAT 4.42,
total 30.42. B: net 2.33, VAT 0.3961 → 0.40, total 2.73.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn
from fastapi import FastAPI
from psycopg_pool import ConnectionPool
from pydantic import SecretStr

from api.main import create_app
from api.operators import create_operator
from api.security import hash_password
from app.settings import Settings
from stream.pipeline import process_reads

CATALOG = Path(__file__).resolve().parents[2] / "app" / "demo" / "catalog.json"
NOW = datetime(2026, 4, 20, 8, 0, tzinfo=UTC)
PW_A, PW_B = "Lozinka-A1!", "Lozinka-B2!"
OP_TOKEN = "op-live-secret"


def seed(conn: psycopg.Connection) -> None:
    for doc in json.loads(CATALOG.read_text()):
        conn.execute("INSERT INTO tariff_versions (tariff_code, valid_from, service, document)"
                     " VALUES (%s, %s, %s, %s)",
                     (doc["tariff_code"], doc["valid_from"], doc["service"], json.dumps(doc)))
    conn.execute("INSERT INTO customers (customer_id, name, kind, address, password_hash) VALUES"
                 " ('100001', 'Amra H.', 'household', 'Ulica A 1', %s),"
                 " ('100002', 'Boris K.', 'household', 'Ulica B 2', %s)",
                 (hash_password(PW_A), hash_password(PW_B)))
    conn.execute("INSERT INTO metering_points (metering_point_id, address, latitude, longitude)"
                 " VALUES ('MP-A', 'Ulica A 1', 44.872500, 18.810300),"
                 " ('MP-B', 'Ulica B 2', 44.880100, 18.801200)")
    conn.execute("INSERT INTO meters VALUES ('E1', 'electricity', 6, 1, '{1.8.1,1.8.2}'),"
                 " ('E2', 'electricity', 6, 1, '{1.8.1,1.8.2}')")
    conn.execute("INSERT INTO meter_installations VALUES ('E1', 'MP-A', '2025-01-01T00:00Z'),"
                 " ('E2', 'MP-B', '2025-01-01T00:00Z')")
    conn.execute("INSERT INTO contracts VALUES"
                 " ('C-A1', '100001', 'MP-A', 'electricity', 'EL-HH', '2025-01-01', NULL),"
                 " ('C-A2', '100001', 'MP-A', 'waste', 'WA-HH', '2025-01-01', NULL),"
                 " ('C-B1', '100002', 'MP-B', 'electricity', 'EL-HH', '2025-01-01', NULL)")


def read(value: str, at: str, meter: str = "E1") -> dict[str, str]:
    return {"meter_id": meter, "register": "1.8.1", "read_at": at, "value": value,
            "unit": "kWh", "source": "amr"}


def push(db_url: str, reads: list[dict[str, Any]]) -> list[str]:
    with psycopg.connect(db_url) as conn, conn.transaction():
        result = process_reads(conn, reads, channel="test", now=int(NOW.timestamp()))
    return [o.status for o in result.outcomes]


@pytest.fixture
def pool(db_url: str) -> Iterator[ConnectionPool]:
    with psycopg.connect(db_url) as conn:
        seed(conn)
    assert push(db_url, [read("100.000", "2026-04-01T00:00:00+02:00"),
                         read("190.000", "2026-04-10T00:00:00+02:00")]) == ["accepted"] * 2
    with ConnectionPool(db_url, min_size=1, max_size=6, open=True) as p:
        yield p


def make_app(pool: ConnectionPool) -> FastAPI:
    settings = Settings(cookie_secure=False).model_copy(
        update={"operator_token": SecretStr(OP_TOKEN)})
    app = create_app(settings, pool, clock=lambda: NOW)
    app.state.live_poll_seconds = 0.1
    app.state.live_max_seconds = 20
    return app


@contextlib.contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """The app on a free local port (uvicorn in a thread): real streaming responses."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, name="live-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextlib.contextmanager
def logged_in(url: str, customer: str, password: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, timeout=10) as client:
        resp = client.post("/api/v1/portal/login", json={"customer_id": customer,
                                                         "password": password})
        assert resp.status_code == 200, resp.text
        yield client


def events(lines: Iterator[str], until: float) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event name, data) of an event stream until the monotonic deadline."""
    name, data = "", ""
    for line in lines:
        if time.monotonic() > until:
            return
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
        elif line == "" and data:
            yield name, json.loads(data)
            name, data = "", ""


def totals(m: dict[str, Any]) -> tuple[str, str, str, dict[str, tuple[str, str, str]]]:
    return m["net"], m["vat"], m["total"], {
        s["service"]: (s["quantity"], s["energy"], s["fees"]) for s in m["services"]}


# ---- snapshot --------------------------------------------------------------------------


def test_snapshot_numbers_worked_out_by_hand(pool: ConnectionPool) -> None:
    with serve(make_app(pool)) as url, logged_in(url, "100001", PW_A) as a, \
            logged_in(url, "100002", PW_B) as b:
        snap = a.get("/api/v1/portal/live/snapshot").json()
        assert (snap["period"], snap["days_elapsed"], snap["days_in_month"]) == ("2026-04", 20, 30)
        assert snap["estimate"] is True
        assert totals(snap) == ("19.69", "3.35", "23.04", {
            "electricity": ("90.000", "11.36", "2.33"), "waste": ("0.000", "0.00", "6.00")})
        other = b.get("/api/v1/portal/live/snapshot").json()
        assert other["customer_id"] == "100002"
        assert totals(other) == ("2.33", "0.40", "2.73",
                                 {"electricity": ("0.000", "0.00", "2.33")})
        assert httpx.get(f"{url}/api/v1/portal/live/snapshot").status_code == 401
        assert httpx.get(f"{url}/api/v1/portal/live", timeout=5).status_code == 401


def test_live_page_shows_the_estimate(pool: ConnectionPool) -> None:
    with serve(make_app(pool)) as url, logged_in(url, "100001", PW_A) as a:
        page = a.get("/uzivo?lang=en")
        assert page.status_code == 200
        assert '<data id="live-total" value="23.04">23.04 KM</data>' in page.text
        assert 'src="/static/live.js"' in page.text and "<script>" not in page.text
        assert "estimate" in page.text.lower()
        assert httpx.get(f"{url}/uzivo", follow_redirects=False).headers["location"] == \
            "/prijava"
        assert a.get("/static/live.js").status_code == 200


# ---- server-sent events ----------------------------------------------------------------


def test_sse_emits_new_totals_after_a_read_and_only_to_its_customer(
        pool: ConnectionPool, db_url: str) -> None:
    with serve(make_app(pool)) as url, logged_in(url, "100001", PW_A) as a, \
            logged_in(url, "100002", PW_B) as b, \
            a.stream("GET", "/api/v1/portal/live") as stream_a, \
            b.stream("GET", "/api/v1/portal/live") as stream_b:
        assert stream_a.status_code == 200
        assert stream_a.headers["content-type"].startswith("text/event-stream")
        seen_a = events(stream_a.iter_lines(), time.monotonic() + 10)
        lines_b = stream_b.iter_lines()
        seen_b = events(lines_b, time.monotonic() + 10)
        first = next(seen_a)
        assert first[0] == "totals" and totals(first[1])[2] == "23.04"
        assert totals(next(seen_b)[1])[2] == "2.73"

        assert push(db_url, [read("240.000", "2026-04-15T00:00:00+02:00")]) == ["accepted"]
        name, after = next(seen_a)
        assert name == "totals"
        assert totals(after) == ("26.00", "4.42", "30.42", {
            "electricity": ("140.000", "17.67", "2.33"), "waste": ("0.000", "0.00", "6.00")})
        # B's totals did not change: B's stream sends nothing but keep-alives meanwhile
        quiet = events(lines_b, time.monotonic() + 1.5)
        assert list(quiet) == []


def test_sse_stream_ends_after_its_lifetime_and_at_logout(pool: ConnectionPool) -> None:
    app = make_app(pool)
    app.state.live_max_seconds = 0.5
    with serve(app) as url, logged_in(url, "100001", PW_A) as a:
        started = time.monotonic()
        with a.stream("GET", "/api/v1/portal/live") as stream:
            got = [name for name, _ in events(stream.iter_lines(), time.monotonic() + 10)]
        assert got == ["totals", "end"]
        assert time.monotonic() - started < 5
        app.state.live_max_seconds, app.state.live_session_check_seconds = 20, 0.2
        with a.stream("GET", "/api/v1/portal/live") as stream:
            seen = events(stream.iter_lines(), time.monotonic() + 10)
            assert next(seen)[0] == "totals"
            assert httpx.post(f"{url}/api/v1/portal/logout", cookies=a.cookies
                              ).status_code == 204
            assert next(seen) == ("end", {"reason": "session"})


# ---- operator screens ------------------------------------------------------------------

OPS_PATHS = ("/ops", "/ops/map", "/ops/customers?q=Amra", "/ops/customers/100001",
             "/api/v1/ops/metering-points.geojson")
OP = {"Authorization": f"Bearer {OP_TOKEN}"}


def test_operator_screens_refuse_without_operator_auth(pool: ConnectionPool) -> None:
    with serve(make_app(pool)) as url, logged_in(url, "100001", PW_A) as customer:
        for path in OPS_PATHS:
            assert httpx.get(url + path).status_code == 401, path
            assert httpx.get(url + path, headers={"Authorization": "Bearer wrong"}
                             ).status_code == 401, path
            assert customer.get(path).status_code == 401, path  # a portal session is no operator
            assert httpx.get(url + path, headers=OP).status_code == 200, path
        with pool.connection() as conn:
            create_operator(conn, "sluzbenik", "Sluzbenik-Lozinka-1", ["clerk"], now=NOW)
        token = httpx.post(f"{url}/api/v1/operators/login", json={
            "username": "sluzbenik", "password": "Sluzbenik-Lozinka-1"}).json()["token"]
        clerk = {"Authorization": f"Bearer {token}"}  # an operator session with role clerk
        for path in OPS_PATHS:
            assert httpx.get(url + path, headers=clerk).status_code == 200, path


def test_geojson_is_a_feature_collection_in_lon_lat(pool: ConnectionPool, db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        conn.execute("INSERT INTO meter_alerts (meter_id, metering_point_id, kind, opened_at,"
                     " last_seen_at) VALUES ('E2', 'MP-B', 'tamper', %s, %s)", (NOW, NOW))
    with serve(make_app(pool)) as url:
        resp = httpx.get(f"{url}/api/v1/ops/metering-points.geojson", headers=OP)
        assert resp.headers["content-type"].startswith("application/geo+json")
        doc = resp.json()
        page = httpx.get(f"{url}/ops/map", headers=OP).text
    assert doc["type"] == "FeatureCollection"
    by_id = {f["id"]: f for f in doc["features"]}
    assert set(by_id) == {"MP-A", "MP-B"}
    for feature in doc["features"]:
        assert feature["type"] == "Feature" and feature["geometry"]["type"] == "Point"
        lon, lat = feature["geometry"]["coordinates"]
        assert 18 < lon < 19 and 44 < lat < 45  # Brčko: longitude first (RFC 7946)
    assert by_id["MP-A"]["geometry"]["coordinates"] == [18.8103, 44.8725]
    assert by_id["MP-A"]["properties"] | {"address": None} == {
        "metering_point_id": "MP-A", "address": None, "services": ["electricity", "waste"],
        "service": "mixed", "state": "metered", "open_alerts": 0}
    assert (by_id["MP-B"]["properties"]["service"], by_id["MP-B"]["properties"]["open_alerts"]
            ) == ("electricity", 1)
    assert page.count('<circle class="mp"') == 2
    assert 'data-id="MP-B" cx=' in page and 'stroke="#dc2626"' in page
    assert "<script" not in page and "style=" not in page


def test_dashboard_counts_reads_rejects_alerts_and_last_24_hours(
        pool: ConnectionPool, db_url: str) -> None:
    # 190 → 200 kWh ending 19 April 12:00 UTC: 10 kWh in the last 24 hours; one bad read
    assert push(db_url, [read("200.000", "2026-04-19T12:00:00Z"),
                         read("abc", "2026-04-19T13:00:00Z")]) == ["accepted", "rejected"]
    with serve(make_app(pool)) as url:
        html = httpx.get(f"{url}/ops?lang=en", headers=OP).text
    assert '<p class="big" id="reads-last-hour">3</p>' in html  # every read arrived at NOW
    assert '<p class="big" id="dead-letters">1</p>' in html
    assert '<p class="big" id="open-alerts">0</p>' in html
    assert "2026-04-20 08:00:00 UTC" in html
    assert re.search(r'<figure class="chart-box" id="hourly-electricity">.*?'
                     r'<span class="hourly-total">10 kWh</span>', html, re.S)
    # waste has no metered consumption, so no chart
    assert html.count('<figure class="chart-box" id="hourly-') == 1


def test_customer_search_and_the_clerks_view(pool: ConnectionPool, db_url: str) -> None:
    assert push(db_url, [read("abc", "2026-04-19T13:00:00Z")]) == ["rejected"]
    with serve(make_app(pool)) as url, httpx.Client(base_url=url, headers=OP) as ops:
        found = ops.get("/ops/customers", params={"q": "amra"}).text
        assert re.findall(r'href="/ops/customers/(\d+)"', found) == ["100001"]
        by_point = ops.get("/ops/customers", params={"q": "MP-B"}).text
        assert re.findall(r'href="/ops/customers/(\d+)"', by_point) == ["100002"]
        assert 'id="results"' not in ops.get("/ops/customers", params={"q": "zzz"}).text
        assert ops.get("/ops/customers/999999").status_code == 404
        page = ops.get("/ops/customers/100001?lang=en").text
    assert "C-A1" in page and "C-A2" in page and "EL-HH" in page and "WA-HH" in page
    reads = re.search(r'<table id="reads">(.*?)</table>', page, re.S)
    assert reads is not None
    assert reads.group(1).count('class="read-accepted"') == 2
    assert reads.group(1).count('class="read-rejected"') == 1
    assert 'id="balance">0.00 KM<' in page
