"""Migration 0006 on a PostgreSQL without TimescaleDB: the rollup views exist under the same
names as the continuous aggregates and add up what the pipeline stored."""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from app.timescale import FALLBACK_SQL, TIMESCALE_SQL, choose_mode, grant_readers, install
from stream.pipeline import process_reads

CATALOG = Path(__file__).resolve().parents[2] / "app" / "demo" / "catalog.json"
NOW = int(datetime(2026, 4, 2, tzinfo=UTC).timestamp())
COLUMNS = ["metering_point_id", "service", "register", "quantity_milli", "amount_nano", "pieces"]


def _seed(conn: psycopg.Connection) -> None:
    for doc in json.loads(CATALOG.read_text()):
        conn.execute(
            "INSERT INTO tariff_versions (tariff_code, valid_from, service, document)"
            " VALUES (%s, %s, %s, %s)",
            (doc["tariff_code"], doc["valid_from"], doc["service"], json.dumps(doc)),
        )
    conn.execute("INSERT INTO customers VALUES ('100001', 'Amra H.', 'household')")
    for mp in ("MP1", "MP2"):
        conn.execute(
            "INSERT INTO metering_points (metering_point_id, address) VALUES (%s, 'X')", (mp,)
        )
    conn.execute("INSERT INTO meters VALUES ('E1', 'electricity', 6, 1, '{1.8.1,1.8.2}')")
    conn.execute("INSERT INTO meters VALUES ('W1', 'water', 5, 1, '{8.0}')")
    conn.execute("INSERT INTO meter_installations VALUES ('E1', 'MP1', '2025-01-01T00:00Z')")
    conn.execute("INSERT INTO meter_installations VALUES ('W1', 'MP2', '2025-01-01T00:00Z')")
    conn.execute(
        "INSERT INTO contracts VALUES ('C1', '100001', 'MP1', 'electricity', 'EL-HH',"
        " '2025-01-01', NULL), ('C2', '100001', 'MP2', 'water', 'W-HH', '2025-01-01', NULL)"
    )


def _read(meter: str, register: str, unit: str, value: str, at: str) -> dict[str, str]:
    return {"meter_id": meter, "register": register, "read_at": at, "value": value, "unit": unit}


ELECTRICITY = [  # Tuesday 31 March → Wednesday 1 April 2026, summer time (+02:00)
    _read("E1", "1.8.1", "kWh", "100.000", "2026-03-31T22:00:00+02:00"),
    _read("E1", "1.8.1", "kWh", "101.250", "2026-03-31T23:15:00+02:00"),
    _read("E1", "1.8.1", "kWh", "102.000", "2026-04-01T00:00:00+02:00"),  # local midnight
    _read("E1", "1.8.1", "kWh", "102.500", "2026-04-01T00:30:00+02:00"),
    _read("E1", "1.8.1", "kWh", "104.000", "2026-04-01T02:00:00+02:00"),
]
WATER = [  # across the switch to summer time (29 March 2026 has 23 hours)
    _read("W1", "8.0", "m3", "10.000", "2026-03-28T12:00:00+01:00"),
    _read("W1", "8.0", "m3", "10.500", "2026-03-29T12:00:00+02:00"),
    _read("W1", "8.0", "m3", "12.000", "2026-03-29T13:00:00+02:00"),
]


def _one(conn: psycopg.Connection, sql: str, params: tuple[object, ...] = ()) -> tuple[Any, ...]:
    row = conn.execute(sql, params).fetchone()
    assert row is not None, sql
    return tuple(row)


@pytest.fixture
def conn(db_url: str):
    with psycopg.connect(db_url) as c:
        _seed(c)
        c.commit()
        with c.transaction():
            res = process_reads(c, ELECTRICITY + WATER, channel="test", now=NOW)
        assert res.accepted == len(ELECTRICITY) + len(WATER), res.outcomes
        yield c


def test_fallback_views_exist_with_the_rollup_columns(db_url: str) -> None:
    with psycopg.connect(db_url) as c:
        assert (
            c.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone() is None
        )
        kinds: dict[str, str] = dict(
            c.execute(
                "SELECT relname, relkind FROM pg_class WHERE relname = ANY(%s)",
                (
                    [
                        "consumption_hourly",
                        "consumption_monthly",
                        "daily_consumption",
                        "consumption_daily_cagg",
                    ],
                ),
            ).fetchall()
        )
        assert kinds == {
            "consumption_hourly": "v",
            "consumption_monthly": "v",
            "daily_consumption": "r",
        }
        for view, time_col, time_type in (
            ("consumption_hourly", "hour_start", "timestamp with time zone"),
            ("consumption_monthly", "month", "date"),
        ):
            cols = c.execute(
                "SELECT column_name, data_type FROM information_schema.columns"
                " WHERE table_name = %s ORDER BY ordinal_position",
                (view,),
            ).fetchall()
            assert [n for n, _ in cols] == [*COLUMNS[:3], time_col, *COLUMNS[3:]]
            types: dict[str, str] = dict(cols)
            assert types[time_col] == time_type
            assert {types[k] for k in COLUMNS[3:]} == {"bigint"}


def test_hourly_view_counts_each_interval_in_the_hour_it_ends(conn: psycopg.Connection) -> None:
    rows = conn.execute(
        "SELECT hour_start, quantity_milli, amount_nano, pieces FROM consumption_hourly"
        " WHERE metering_point_id = 'MP1' ORDER BY hour_start"
    ).fetchall()
    utc = [(r[0].astimezone(UTC).strftime("%m-%d %H:%M"), r[1], r[2], r[3]) for r in rows]
    # (20:00Z, 21:15Z] and (21:15Z, 22:00Z] both end in 21:00–22:00 UTC; 1.8.1 in March
    # (higher season) 0.1578 KM/kWh, in April (lower season) 0.1262 KM/kWh.
    assert utc == [
        ("03-31 21:00", 2000, 2000 * 157800, 2),
        ("03-31 22:00", 500, 500 * 126200, 1),
        ("03-31 23:00", 1500, 1500 * 126200, 1),
    ]


def test_monthly_view_splits_at_local_midnight_of_the_first(conn: psycopg.Connection) -> None:
    rows = conn.execute(
        "SELECT month::text, service, quantity_milli, amount_nano"
        " FROM consumption_monthly ORDER BY service, month"
    ).fetchall()
    water_amount = _one(
        conn, "SELECT sum(amount_nano) FROM consumption_intervals WHERE service = 'water'"
    )[0]
    assert rows == [
        ("2026-03-01", "electricity", 2000, 2000 * 157800),  # ends up to 00:00 on 1 April
        ("2026-04-01", "electricity", 2000, 2000 * 126200),
        ("2026-03-01", "water", 2000, water_amount),
    ]
    # W-HH: 1.068376 KM/m3 on every day
    assert water_amount == 2000 * 1068376


def test_views_agree_with_their_sources_grouped_by_hand(conn: psycopg.Connection) -> None:
    """Hourly from consumption_intervals (by end), monthly from daily_consumption."""
    intervals = conn.execute(
        "SELECT metering_point_id, service, register, end_at, quantity_milli, amount_nano"
        " FROM consumption_intervals"
    ).fetchall()
    days = conn.execute(
        "SELECT metering_point_id, service, register, local_day, quantity_milli, amount_nano,"
        " pieces FROM daily_consumption"
    ).fetchall()
    hourly: dict[tuple[object, ...], list[int]] = defaultdict(lambda: [0, 0, 0])
    for mp, service, register, end_at, qty, amount in intervals:
        end = end_at.astimezone(UTC) - timedelta(microseconds=1)
        key = (mp, service, register, end.replace(minute=0, second=0, microsecond=0))
        hourly[key] = [hourly[key][0] + qty, hourly[key][1] + amount, hourly[key][2] + 1]
    monthly: dict[tuple[object, ...], list[int]] = defaultdict(lambda: [0, 0, 0])
    for mp, service, register, day, qty, amount, n in days:
        key = (mp, service, register, day.replace(day=1))
        monthly[key] = [monthly[key][0] + qty, monthly[key][1] + amount, monthly[key][2] + n]
    got_h = {
        (r[0], r[1], r[2], r[3].astimezone(UTC)): [r[4], r[5], r[6]]
        for r in conn.execute("SELECT * FROM consumption_hourly")
    }
    got_m = {
        (r[0], r[1], r[2], r[3]): [r[4], r[5], r[6]]
        for r in conn.execute("SELECT * FROM consumption_monthly")
    }
    assert got_h == dict(hourly)
    assert got_m == dict(monthly)
    assert sum(v[0] for v in got_m.values()) == sum(i[4] for i in intervals) == 6000


def test_install_again_is_harmless(conn: psycopg.Connection) -> None:
    with conn.transaction():
        assert install(conn) == "postgresql"
    assert conn.execute("SELECT sum(quantity_milli) FROM consumption_monthly").fetchone() == (6000,)


def test_reader_role_may_read_rollups_and_nothing_else(conn: psycopg.Connection) -> None:
    role = f"reader_{uuid.uuid4().hex[:8]}"
    conn.execute(f'CREATE ROLE "{role}" NOLOGIN')  # roles are cluster-wide: dropped below
    conn.commit()
    try:
        with conn.transaction():
            assert grant_readers(conn.cursor(), role)
        can = {
            t: _one(conn, "SELECT has_table_privilege(%s, %s, 'SELECT')", (role, t))[0]
            for t in (
                "daily_consumption",
                "consumption_hourly",
                "consumption_monthly",
                "consumption_intervals",
                "customers",
                "invoices",
            )
        }
        assert can == {
            "daily_consumption": True,
            "consumption_hourly": True,
            "consumption_monthly": True,
            "consumption_intervals": False,
            "customers": False,
            "invoices": False,
        }
        assert grant_readers(conn.cursor(), f"missing_{role}") is False
    finally:
        conn.rollback()
        conn.execute(f'DROP OWNED BY "{role}"')
        conn.execute(f'DROP ROLE "{role}"')
        conn.commit()


def test_mode_needs_the_extension_preloaded() -> None:
    assert choose_mode(False, "timescaledb") == "postgresql"
    assert choose_mode(True, "") == "postgresql"
    assert choose_mode(True, "pg_stat_statements, timescaledb") == "timescaledb"


def test_timescale_statements_parse_with_the_postgresql_parser() -> None:
    """Not run against TimescaleDB here (no server has it); at least PostgreSQL's own parser
    (libpg_query) accepts every statement, and the plan covers both tables and all rollups."""
    pglast = pytest.importorskip("pglast")
    for sql in TIMESCALE_SQL + FALLBACK_SQL:
        pglast.parse_sql(sql)
    text = "\n".join(TIMESCALE_SQL)
    for needle in (
        "create_hypertable('readings', 'read_at'",
        "create_hypertable('consumption_intervals', 'end_at'",
        "create_hypertable('daily_consumption', 'local_day'",
        "migrate_data => true",
        "CREATE MATERIALIZED VIEW consumption_hourly_cagg",
        "CREATE MATERIALIZED VIEW consumption_daily_cagg",
        "CREATE MATERIALIZED VIEW consumption_monthly_cagg",
        "add_compression_policy('readings'",
        "add_compression_policy('consumption_intervals'",
        "add_retention_policy('readings'",
        "CREATE OR REPLACE VIEW consumption_hourly AS",
        "CREATE OR REPLACE VIEW consumption_monthly AS",
    ):
        assert needle in text, needle


def test_consumption_dashboard_queries_run_as_the_reader_role(conn: psycopg.Connection) -> None:
    """Grafana's SQL (macros filled in as Grafana does) works with the reader's grants."""
    board = json.loads(
        (
            Path(__file__).resolve().parents[2] / "infra/grafana/dashboards/consumption.json"
        ).read_text()
    )
    role = f"reader_{uuid.uuid4().hex[:8]}"
    conn.execute(f'CREATE ROLE "{role}" NOLOGIN')
    conn.commit()
    results: dict[str, list[tuple[Any, ...]]] = {}
    try:
        with conn.transaction():
            grant_readers(conn.cursor(), role)
            conn.execute(f'SET LOCAL ROLE "{role}"')
            for panel in board["panels"]:
                sql = panel["targets"][0]["rawSql"]
                sql = sql.replace("$__timeFrom()", "'2026-03-01T00:00:00Z'")
                sql = sql.replace("$__timeTo()", "'2026-04-30T22:00:00Z'")
                results[panel["title"]] = conn.execute(sql).fetchall()
    finally:
        conn.rollback()
        conn.execute(f'DROP OWNED BY "{role}"')
        conn.execute(f'DROP ROLE "{role}"')
        conn.commit()
    monthly = results["Electricity per month (kWh)"]
    assert [(t.astimezone(UTC).isoformat(), m, float(v)) for t, m, v in monthly] == [
        ("2026-02-28T23:00:00+00:00", "electricity", 2.0),
        ("2026-03-31T22:00:00+00:00", "electricity", 2.0),
    ]
    daily = results["Water per day (m³)"]
    assert round(sum(float(v) for _, _, v in daily), 3) == 2.0
