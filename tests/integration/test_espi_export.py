"""Green Button (ESPI) download on a real PostgreSQL: the feed holds exactly the
customer's ``daily_consumption`` days of the last 24 months while each contract ran;
another customer's days (even on a metering point that changed hands) never appear."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from typing import Any

import psycopg
import pytest
from defusedxml import ElementTree as SafeET
from psycopg_pool import ConnectionPool

from api.espi import ATOM, ESPI
from api.routes.account_pages import espi_first_day
from rating.calendar import LOCAL_TZ
from tests.integration.test_api_portal import PW_A, PW_B, START, Clock, login, make_client, seed

A, E = f"{{{ATOM}}}", f"{{{ESPI}}}"

# (metering point, service, register, day, quantity_milli)
DAYS = [
    ("MP-A", "electricity", "1.8.1", "2024-03-31", 111),  # older than 24 months
    ("MP-A", "electricity", "1.8.1", "2024-04-01", 4_001),
    ("MP-A", "electricity", "1.8.1", "2026-03-29", 6_329),  # 23-hour day
    ("MP-A", "electricity", "1.8.1", "2026-04-20", 6_420),  # today
    ("MP-A", "electricity", "1.8.1", "2026-04-21", 999),  # tomorrow: not yet
    ("MP-A", "electricity", "1.8.2", "2026-03-01", 3_000),
    ("MP-A", "water", "8.0", "2026-03-01", 12_345),
    ("MP-B", "electricity", "1.8.1", "2026-02-15", 2_150),  # A's last day at MP-B
    ("MP-B", "electricity", "1.8.1", "2026-02-16", 2_160),  # B's first day there
    ("MP-B", "electricity", "1.8.1", "2026-04-01", 2_401),
]


@pytest.fixture
def pool(db_url: str) -> Iterator[ConnectionPool]:
    with psycopg.connect(db_url) as conn:
        seed(conn)
        conn.execute("""INSERT INTO contracts VALUES
            ('C-AE', '100001', 'MP-A', 'electricity', 'EL-HH', '2024-01-01', NULL),
            ('C-AW', '100001', 'MP-A', 'water', 'W-HH', '2024-01-01', NULL),
            ('C-AS', '100001', 'MP-A', 'waste', 'WA-HH', '2024-01-01', NULL),
            ('C-AB', '100001', 'MP-B', 'electricity', 'EL-HH', '2024-01-01', '2026-02-15'),
            ('C-BB', '100002', 'MP-B', 'electricity', 'EL-HH', '2026-02-16', NULL)""")
        for mp, service, register, day, qty in DAYS:
            conn.execute("INSERT INTO daily_consumption VALUES (%s, %s, %s, %s, %s, 0, 1)",
                         (mp, service, register, day, qty))
    with ConnectionPool(db_url, min_size=1, max_size=4, open=True) as p:
        yield p


def readings(xml: bytes) -> set[tuple[str, str, str, str, int]]:
    """(metering point, service, register, local day, value) of every IntervalReading,
    found through the feed's own links (block → meter reading → usage point)."""
    feed = SafeET.fromstring(xml)
    assert feed.tag == f"{A}feed"
    titles: dict[str, str] = {}
    blocks: list[tuple[str, Any]] = []
    for entry in feed.findall(f"{A}entry"):
        self_href = next(ln.get("href") for ln in entry.findall(f"{A}link")
                         if ln.get("rel") == "self")
        titles[self_href] = entry.findtext(f"{A}title")
        block = entry.find(f"{A}content/{E}IntervalBlock")
        if block is not None:
            blocks.append((self_href, block))
    out = set()
    for href, block in blocks:
        reading_href = href.rsplit("/IntervalBlock/", 1)[0]
        point_href = reading_href.rsplit("/MeterReading/", 1)[0]
        mp, service = titles[point_href].split(" – ")
        register = titles[reading_href].split(" – ")[1]
        for r in block.findall(f"{E}IntervalReading"):
            start = int(r.findtext(f"{E}timePeriod/{E}start"))
            day = datetime.fromtimestamp(start, LOCAL_TZ).date().isoformat()
            out.add((mp, service, register, day, int(r.findtext(f"{E}value"))))
    return out


def test_the_feed_holds_exactly_the_customers_days(pool: ConnectionPool) -> None:
    with make_client(pool, Clock(START)) as client:
        assert client.get("/api/v1/portal/export.xml").status_code == 401
        login(client, "100001", PW_A)
        resp = client.get("/api/v1/portal/export.xml")
        page = client.get("/pregled")
        browser = client.get("/moji-podaci.xml")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/atom+xml")
    assert resp.headers["content-disposition"] == (
        'attachment; filename="green-button-100001.xml"')
    assert resp.headers["cache-control"] == "no-store"
    assert readings(resp.content) == {
        ("MP-A", "electricity", "1.8.1", "2024-04-01", 4_001),
        ("MP-A", "electricity", "1.8.1", "2026-03-29", 6_329),
        ("MP-A", "electricity", "1.8.1", "2026-04-20", 6_420),
        ("MP-A", "electricity", "1.8.2", "2026-03-01", 3_000),
        ("MP-A", "water", "8.0", "2026-03-01", 12_345),
        ("MP-B", "electricity", "1.8.1", "2026-02-15", 2_150),
    }
    kinds = [c.findtext(f"{E}kind") for c in
             SafeET.fromstring(resp.content).iter(f"{E}ServiceCategory")]
    assert kinds == ["0", "2", "0"]  # MP-A electricity, MP-A water, MP-B electricity
    assert browser.status_code == 200 and browser.content == resp.content
    assert 'id="export-espi" href="/moji-podaci.xml"' in page.text


def test_another_customer_gets_only_their_days(pool: ConnectionPool) -> None:
    with make_client(pool, Clock(START)) as client:
        login(client, "100002", PW_B)
        got = readings(client.get("/api/v1/portal/export.xml").content)
    assert got == {("MP-B", "electricity", "1.8.1", "2026-02-16", 2_160),
                   ("MP-B", "electricity", "1.8.1", "2026-04-01", 2_401)}


def test_without_a_session_the_browser_goes_to_the_login(pool: ConnectionPool) -> None:
    with make_client(pool, Clock(START)) as client:
        resp = client.get("/moji-podaci.xml", follow_redirects=False)
    assert (resp.status_code, resp.headers["location"]) == (303, "/prijava")


def test_the_window_is_24_months_back_from_the_first_of_the_month() -> None:
    assert espi_first_day(date(2026, 4, 20)) == date(2024, 4, 1)
    assert espi_first_day(date(2026, 1, 1)) == date(2024, 1, 1)
    assert espi_first_day(date(2026, 12, 31), months=1) == date(2026, 11, 1)
