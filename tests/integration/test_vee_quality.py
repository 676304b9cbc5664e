"""Meter-data validation on a real PostgreSQL: quality flags stored with the reads, the
quarantine of reads from the future (listed, released through the chain), the demand
register, the multiplier, and a meter replacement billed through the monthly close."""

from __future__ import annotations

import json
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
from app.settings import Settings
from billing.closer import close_period
from stream.pipeline import BatchResult, process_reads
from tests.integration.test_self_read_page import answer, send, stored
from tests.integration.test_self_read_page import client as client  # noqa: F401 (fixture)
from tests.integration.test_self_read_page import pool as pool  # noqa: F401 (fixture)

CATALOG = json.loads((Path(__file__).resolve().parents[2] / "app/demo/catalog.json").read_text())
T0 = datetime(2026, 3, 1, tzinfo=UTC)
NOW = int(datetime(2026, 6, 1, tzinfo=UTC).timestamp())
DAY = timedelta(days=1)


def seed(conn: psycopg.Connection) -> None:
    for doc in CATALOG:
        conn.execute(
            "INSERT INTO tariff_versions (tariff_code, valid_from, service, document)"
            " VALUES (%s, %s, %s, %s)",
            (doc["tariff_code"], doc["valid_from"], doc["service"], json.dumps(doc)),
        )
    conn.execute("""
        INSERT INTO customers (customer_id, name, kind) VALUES ('100001', 'Amra H.', 'household');
        INSERT INTO metering_points (metering_point_id, address) VALUES
            ('MP1', 'Bulevar mira 1'), ('MP2', 'Trg mladih 2');
        INSERT INTO meters VALUES
            ('E1', 'electricity', 6, 1, '{1.8.1,1.6.0}'),
            ('E2', 'electricity', 6, 1, '{1.8.1}'),
            ('CT', 'electricity', 5, 40, '{1.8.1}');
        INSERT INTO meter_installations VALUES
            ('E1', 'MP1', '2025-01-01T00:00Z'), ('CT', 'MP2', '2025-01-01T00:00Z');
        INSERT INTO contracts VALUES
            ('C1', '100001', 'MP1', 'electricity', 'EL-HH', '2025-01-01', NULL);
    """)


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_url) as c:
        seed(c)
        c.commit()
        yield c


def rd(value: str, at: datetime, *, meter: str = "E1", register: str = "1.8.1",
       unit: str = "kWh", source: str = "amr") -> dict[str, str]:  # fmt: skip
    return {"meter_id": meter, "register": register, "read_at": at.isoformat(), "value": value,
            "unit": unit, "source": source}  # fmt: skip


def push(conn: psycopg.Connection, reads: list[dict[str, str]], now: int = NOW,
         **kw: Any) -> BatchResult:  # fmt: skip
    with conn.transaction():
        return process_reads(conn, reads, channel="test", now=now, **kw)


def quality(conn: psycopg.Connection, meter: str = "E1", register: str = "1.8.1") -> list[Any]:
    return conn.execute(
        "SELECT value_milli, quality FROM readings WHERE meter_id = %s AND register = %s"
        " ORDER BY read_at",
        (meter, register),
    ).fetchall()


def test_flags_are_stored_with_the_reads(conn: psycopg.Connection) -> None:
    res = push(conn, [rd("999990", T0), rd("999995", T0 + DAY)])
    assert [o.status for o in res.outcomes] == ["accepted"] * 2
    push(conn, [rd("10", T0 + 2 * DAY)])  # over the sixth digit
    push(conn, [rd("40", T0 + 6 * DAY)])  # four days after the last AMR read
    push(conn, [rd("70", T0 + 7 * DAY, source="manual")])
    assert quality(conn) == [
        (999_990_000, ["initial"]), (999_995_000, []), (10_000, ["rollover"]),
        (40_000, ["gap"]), (70_000, []),
    ]  # fmt: skip
    # the gap's 30 kWh are still spread evenly over its 96 hours: 7.5 kWh a whole day
    days = conn.execute(
        "SELECT quantity_milli FROM daily_consumption WHERE local_day BETWEEN '2026-03-04'"
        " AND '2026-03-06' ORDER BY local_day"
    ).fetchall()
    assert days == [(7_500,), (7_500,), (7_500,)]


def test_spike_is_flagged_and_stored_against_the_daily_history(conn: psycopg.Connection) -> None:
    reads = [rd(f"{1000 + 8 * d}", T0 + d * DAY) for d in range(11)]  # 8 kWh a day
    push(conn, reads)
    res = push(conn, [rd("1280", T0 + 11 * DAY), rd("1290", T0 + 12 * DAY)])
    assert [o.status for o in res.outcomes] == ["accepted", "accepted"]
    assert quality(conn)[-2:] == [(1_280_000, ["spike"]), (1_290_000, [])]
    # still billed: the interval is there
    assert conn.execute(
        "SELECT quantity_milli FROM consumption_intervals WHERE end_at = %s", (T0 + 11 * DAY,)
    ).fetchone() == (200_000,)


def test_self_read_spike_is_refused_with_a_clear_reason(conn: psycopg.Connection) -> None:
    push(conn, [rd(f"{1000 + 8 * d}", T0 + d * DAY) for d in range(11)])
    res = push(conn, [rd("1280", T0 + 11 * DAY, source="self")], reject_spikes=True)
    assert res.outcomes[0].status == "rejected"
    assert res.outcomes[0].reason == (
        "spike: the advance of 200.000 kWh per day is more than 10 × the usual daily "
        "consumption (8.000 kWh, median of the last 60 days); check the value"
    )
    kept = conn.execute("SELECT reason FROM rejected_reads").fetchall()
    assert [r[0].split(":")[0] for r in kept] == ["spike"]
    res = push(conn, [rd("1090", T0 + 11 * DAY, source="self")], reject_spikes=True)
    assert res.outcomes[0].status == "accepted"


def test_zero_consumption_over_batches(conn: psycopg.Connection) -> None:
    push(conn, [rd("100", T0, source="manual"), rd("105", T0 + 2 * DAY, source="manual")])
    push(conn, [rd("105", T0 + 20 * DAY, source="manual")])
    since = conn.execute("SELECT value_since FROM meter_state WHERE meter_id = 'E1'").fetchone()
    assert since == (T0 + 2 * DAY,)
    push(conn, [rd("105", T0 + 32 * DAY, source="manual")])
    push(conn, [rd("106", T0 + 40 * DAY, source="manual")])
    assert [q for _, q in quality(conn)] == [
        ["initial"], [], [], ["zero_consumption"], [],
    ]  # fmt: skip
    push(conn, [rd("50", T0, meter="CT"), rd("50", T0 + 31 * DAY, meter="CT", source="manual")])
    assert [q for _, q in quality(conn, "CT")] == [["initial"], []]  # MP2 has no contract


def test_installation_bounds_and_units(conn: psycopg.Connection) -> None:
    conn.execute("UPDATE meter_installations SET removed_at = %s WHERE meter_id = 'E1'",
                 (T0 + 10 * DAY,))  # fmt: skip
    conn.commit()
    res = push(conn, [
        rd("1", datetime(2024, 12, 31, tzinfo=UTC)),
        rd("2", T0 + 10 * DAY + timedelta(seconds=1)),
        rd("3", T0, unit="kW"),
        rd("4", T0 + 10 * DAY),
    ])  # fmt: skip
    assert [(o.status, o.reason) for o in res.outcomes] == [
        ("rejected", "read_at is before the meter was installed"),
        ("rejected", "read_at is after the meter was removed"),
        ("rejected", "unit kW does not fit register 1.8.1 (expected kWh)"),
        ("accepted", None),
    ]
    assert quality(conn) == [(4_000, ["initial", "final"])]
    assert conn.execute("SELECT count(*) FROM rejected_reads").fetchone() == (3,)


def test_multiplier_multiplies_the_advance(conn: psycopg.Connection) -> None:
    push(conn, [rd("100", T0, meter="CT"), rd("112.5", T0 + DAY, meter="CT")])
    assert conn.execute(
        "SELECT quantity_milli FROM consumption_intervals WHERE meter_id = 'CT'"
    ).fetchone() == (12_500 * 40,)
    assert conn.execute(
        "SELECT sum(quantity_milli) FROM daily_consumption WHERE metering_point_id = 'MP2'"
    ).fetchone() == (500_000,)


def test_demand_register_is_stored_without_intervals(conn: psycopg.Connection) -> None:
    kw = [rd("7.250", T0 + DAY, register="1.6.0", unit="kW"),
          rd("5.100", T0 + 2 * DAY, register="1.6.0", unit="kW")]  # fmt: skip
    assert push(conn, kw).accepted == 2
    late = push(conn, [rd("6.000", T0 + DAY / 2, register="1.6.0", unit="kW")])
    assert late.outcomes[0].status == "accepted"  # a late peak makes no interval: kept
    again = push(conn, kw)
    assert [o.status for o in again.outcomes] == ["duplicate", "duplicate"]
    assert quality(conn, register="1.6.0") == [(6_000, []), (7_250, []), (5_100, [])]
    assert conn.execute(
        "SELECT count(*) FROM consumption_intervals WHERE register = '1.6.0'"
    ).fetchone() == (0,)
    assert conn.execute(
        "SELECT count(*) FROM daily_consumption WHERE register = '1.6.0'"
    ).fetchone() == (0,)


# --- quarantine --------------------------------------------------------------------------------


def test_future_reads_are_quarantined_listed_and_released(db_url: str) -> None:
    with psycopg.connect(db_url) as c:
        seed(c)
        c.commit()
        push(c, [rd("100", T0)], now=int((T0 + DAY).timestamp()))
        future = [rd("110", T0 + 3 * DAY)]
        res = push(c, future, now=int((T0 + DAY).timestamp()))
        assert (res.quarantined, res.rejected, res.accepted) == (1, 0, 0)
        assert res.outcomes[0].status == "quarantined"
        assert res.outcomes[0].reason == "read_at is in the future: 48 h 0 min ahead of the clock"
        push(c, future, now=int((T0 + DAY).timestamp()))  # redelivered: kept once
        assert c.execute("SELECT count(*) FROM quarantined_reads").fetchone() == (1,)
        assert c.execute("SELECT count(*) FROM readings").fetchone() == (1,)
        assert c.execute("SELECT count(*) FROM rejected_reads").fetchone() == (0,)

    clock = {"now": T0 + DAY}
    settings = Settings().model_copy(update={"operator_token": SecretStr("op-secret")})
    auth = {"Authorization": "Bearer op-secret"}
    with ConnectionPool(db_url, min_size=1, max_size=2, open=True) as pool:
        app = create_app(settings, pool, clock=lambda: clock["now"])
        with TestClient(app) as client:
            assert client.get("/api/v1/ops/quarantine").status_code == 401
            listed = client.get("/api/v1/ops/quarantine", headers=auth).json()
            assert listed["waiting"] == 1
            item = listed["quarantined"][0]
            assert (item["meter_id"], item["value"], item["releasable"]) == ("E1", "110.000", False)
            assert item["payload"] == future[0]
            qid = item["quarantine_id"]
            early = client.post(f"/api/v1/ops/quarantine/{qid}/release", headers=auth)
            assert early.status_code == 409 and "still ahead of the clock" in early.json()["detail"]

            clock["now"] = T0 + 3 * DAY + timedelta(hours=1)
            done = client.post(f"/api/v1/ops/quarantine/{qid}/release", headers=auth)
            assert done.status_code == 200, done.text
            body = done.json()
            assert (body["release_status"], body["released_by"]) == ("accepted", "operator_token")
            twice = client.post(f"/api/v1/ops/quarantine/{qid}/release", headers=auth)
            assert twice.status_code == 409
            assert (
                client.post("/api/v1/ops/quarantine/999/release", headers=auth).status_code == 404
            )
            assert client.get("/api/v1/ops/quarantine", headers=auth).json()["waiting"] == 0
            released = client.get("/api/v1/ops/quarantine?state=released", headers=auth).json()
            assert [q["quarantine_id"] for q in released["quarantined"]] == [qid]
    with psycopg.connect(db_url) as c:  # released through the chain: stored and rated
        assert quality(c) == [(100_000, ["initial"]), (110_000, ["gap"])]
        assert c.execute("SELECT sum(quantity_milli) FROM consumption_intervals").fetchone() == (
            10_000,
        )


# --- meter replacement through the close -------------------------------------------------------


def test_meter_replacement_is_billed_across_the_change(conn: psycopg.Connection) -> None:
    change = datetime(2026, 3, 15, 10, 0, tzinfo=UTC)
    push(conn, [rd("1000", T0 - timedelta(hours=1), source="manual")])  # 1 March local midnight
    conn.execute("UPDATE meter_installations SET removed_at = %s WHERE meter_id = 'E1'",
                 (change,))  # fmt: skip
    conn.execute("INSERT INTO meter_installations VALUES ('E2', 'MP1', %s)", (change,))
    conn.commit()
    res = push(
        conn,
        [
            rd("1180", change, source="manual"),  # final of the old meter
            rd("5", change, meter="E2", source="manual"),
        ],
    )  # initial of the new one
    assert [o.status for o in res.outcomes] == ["accepted", "accepted"]
    push(conn, [rd("125", datetime(2026, 3, 31, 10, tzinfo=UTC), meter="E2", source="manual")])
    assert [q for _, q in quality(conn, "E1")] == [["initial"], ["final"]]
    assert [q for _, q in quality(conn, "E2")] == [["initial"], []]
    # no interval from zero: (1180 − 1000) + (125 − 5) = 300 kWh
    intervals = conn.execute(
        "SELECT meter_id, quantity_milli FROM consumption_intervals ORDER BY end_at"
    ).fetchall()
    assert intervals == [("E1", 180_000), ("E2", 120_000)]
    result = close_period(conn, "2026-03", issued_on=date(2026, 4, 2), line_sources=[],
                          after_write=[])  # fmt: skip
    assert result.invoices_created == 1
    lines = conn.execute(
        "SELECT component, quantity_milli, amount_fen FROM invoice_lines ORDER BY line_no"
    ).fetchall()
    assert ("energy_vt_higher", 300_000, 4_734) in lines  # 300 kWh × 0.1578 KM


# --- the portal's self-read form (fixtures of test_self_read_page) ---------------------------


def test_self_read_form_refuses_a_spike(client: TestClient, pool: ConnectionPool) -> None:
    with pool.connection() as c:  # 59 days of 10 kWh before the last read (1 April)
        c.execute(
            "INSERT INTO daily_consumption SELECT 'MP-1', 'electricity', '1.8.1', d::date,"
            " 10000, 0, 1 FROM generate_series(DATE '2026-02-01', DATE '2026-03-31', '1 day') d"
        )
    status, html = send(client, {"E-1:1.8.1": "13234,5", "W-1:8.0": "813"})
    assert status == 200
    got = answer(html, "E-1", "1.8.1")
    # 3000 kWh in 19.4 days: 154.5 kWh a day against a median of 10
    assert got[0] == "rejected" and got[1].startswith(
        "Nije prihvaćeno: vrijednost daje potrošnju mnogo veću od uobičajene"
    ), got  # in the customer's words, not the rule's
    assert answer(html, "W-1", "8.0")[0] == "accepted"  # no water history: judged normally
    assert 'value="13234,5"' in html  # kept in the form to correct
    assert [r[0] for r in stored(pool)] == ["W-1"]
    status, html = send(client, {"E-1:1.8.1": "10334,5"})  # 100 kWh in 19 days: fine
    assert answer(html, "E-1", "1.8.1")[0] == "accepted"
