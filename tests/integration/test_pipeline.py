"""The in-process chain on a real PostgreSQL: validate → intervals → rate → store."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from stream.pipeline import process_reads

CATALOG = Path(__file__).resolve().parents[2] / "app" / "demo" / "catalog.json"


def seed(conn: psycopg.Connection) -> None:
    for doc in json.loads(CATALOG.read_text()):
        conn.execute(
            "INSERT INTO tariff_versions (tariff_code, valid_from, service, document)"
            " VALUES (%s, %s, %s, %s)",
            (doc["tariff_code"], doc["valid_from"], doc["service"], json.dumps(doc)),
        )
    conn.execute("INSERT INTO customers VALUES ('100001', 'Amra H.', 'household')")
    conn.execute("INSERT INTO metering_points (metering_point_id, address) VALUES ('MP1', 'X 1')")
    conn.execute("INSERT INTO meters VALUES ('E1', 'electricity', 6, 1, '{1.8.1,1.8.2}')")
    conn.execute("INSERT INTO meter_installations VALUES ('E1', 'MP1', '2025-01-01T00:00Z')")
    conn.execute(
        "INSERT INTO contracts VALUES ('C1', '100001', 'MP1', 'electricity', 'EL-HH',"
        " '2025-01-01', NULL)"
    )


def read(value: str, at: str, register: str = "1.8.1") -> dict[str, str]:
    return {
        "meter_id": "E1",
        "register": register,
        "read_at": at,
        "value": value,
        "unit": "kWh",
        "source": "amr",
    }


NOW = int(datetime(2026, 4, 1, tzinfo=UTC).timestamp())


@pytest.fixture
def conn(db_url: str):
    with psycopg.connect(db_url) as c:
        seed(c)
        c.commit()
        yield c


def test_good_reads_make_intervals_split_at_local_midnight(conn: psycopg.Connection) -> None:
    with conn.transaction():
        res = process_reads(
            conn,
            [
                read("100.000", "2026-03-01T00:00:00+01:00"),
                read("130.500", "2026-03-03T12:00:00+01:00"),
            ],
            channel="test",
            now=NOW,
        )
    assert [o.status for o in res.outcomes] == ["accepted", "accepted"]
    interval = conn.execute(
        "SELECT local_day, quantity_milli, price_micro, amount_nano FROM consumption_intervals"
    ).fetchall()
    # one interval of 30.5 kWh at 0.1578 KM/kWh, its local day = the day it ends in
    assert [(str(r[0]), r[1], r[2], r[3]) for r in interval] == [
        ("2026-03-03", 30500, 157800, 30500 * 157800)
    ]
    rows = conn.execute(
        "SELECT local_day, quantity_milli, amount_nano, pieces FROM daily_consumption ORDER BY 1"
    ).fetchall()
    assert [str(r[0]) for r in rows] == ["2026-03-01", "2026-03-02", "2026-03-03"]
    # 60 h interval: 24/60, 24/60, 12/60 of 30.5 kWh
    assert [r[1] for r in rows] == [12200, 12200, 6100]
    assert [r[2] for r in rows] == [q * 157800 for q in (12200, 12200, 6100)]
    assert [r[3] for r in rows] == [1, 1, 1]


def test_bad_reads_rejected_with_reasons_good_kept(conn: psycopg.Connection) -> None:
    with conn.transaction():
        process_reads(conn, [read("100.000", "2026-03-01T00:00:00+01:00")], channel="t", now=NOW)
    batch = [
        read("120.000", "2026-03-02T00:00:00+01:00"),
        {
            "meter_id": "NOPE",
            "register": "1.8.1",
            "read_at": "2026-03-02T00:00:00Z",
            "value": 1,
            "unit": "kWh",
        },
        read("abc", "2026-03-02T00:00:00+01:00"),
        read("110.000", "2026-03-03T00:00:00+01:00"),
        read("120.000", "2026-03-02T00:00:00+01:00"),
        read("125.000", "2026-03-02T00:00:00+01:00"),
        read("1.000", "2026-03-02T00:00:00"),
        "not an object",
    ]
    with conn.transaction():
        res = process_reads(conn, batch, channel="t", now=NOW)
    statuses = [(o.status, o.reason) for o in res.outcomes]
    assert statuses[0] == ("accepted", None)
    assert statuses[1] == ("rejected", "unknown meter NOPE")
    assert statuses[2][0] == "rejected" and (statuses[2][1] or "").startswith("value:")
    assert statuses[3] == ("rejected", "register went backwards without a rollover")
    assert statuses[4] == ("duplicate", None)
    assert statuses[5] == ("rejected", "conflicts with an accepted read at the same instant")
    assert (statuses[6][1] or "").startswith("read_at: must be an RFC 3339 timestamp with offset")
    assert statuses[7][0] == "rejected"
    assert conn.execute("SELECT count(*) FROM rejected_reads").fetchone() == (6,)
    assert conn.execute("SELECT count(*) FROM readings").fetchone() == (2,)


def test_redelivery_changes_nothing(conn: psycopg.Connection) -> None:
    batch = [
        read("100.000", "2026-03-01T00:00:00+01:00"),
        read("110.000", "2026-03-02T00:00+01:00"),
        read("125.000", "2026-03-03T00:00+01:00"),
    ]
    with conn.transaction():
        process_reads(conn, batch, channel="t", now=NOW)
    snapshot = conn.execute("SELECT * FROM daily_consumption ORDER BY local_day").fetchall()
    with conn.transaction():
        res = process_reads(conn, batch, channel="t", now=NOW)
    assert [o.status for o in res.outcomes] == ["duplicate"] * 3
    assert conn.execute("SELECT * FROM daily_consumption ORDER BY local_day").fetchall() == snapshot


def test_rollover_is_accepted(conn: psycopg.Connection) -> None:
    with conn.transaction():
        res = process_reads(
            conn,
            [
                read("999990.000", "2026-03-01T00:00:00+01:00"),
                read("5.000", "2026-03-02T00:00:00+01:00"),
            ],
            channel="t",
            now=NOW,
        )
    assert [o.status for o in res.outcomes] == ["accepted", "accepted"]
    assert conn.execute("SELECT sum(quantity_milli) FROM consumption_intervals").fetchone() == (
        15000,
    )
    flags = conn.execute("SELECT quality FROM readings ORDER BY read_at").fetchall()
    assert flags == [(["initial"],), (["rollover"],)]
