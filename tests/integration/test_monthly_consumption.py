"""`monthly_consumption` (migration 0025) stays equal to `daily_consumption` grouped per
metering point, service, register and month, whatever writes the day rows: inserts, the
sink's upsert, updates (a read edit), deletes, truncation, the stream itself."""

from __future__ import annotations

import json
import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream.pipeline import process_reads
from stream.read_edits import apply_read_edit

CATALOG = Path(__file__).resolve().parents[2] / "app" / "demo" / "catalog.json"

GROUPED = """
SELECT metering_point_id, service, register, date_trunc('month', local_day)::date,
       sum(quantity_milli)::bigint, min(local_day), count(*)::integer
FROM daily_consumption GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
"""
MONTHLY = """
SELECT metering_point_id, service, register, month, quantity_milli, first_day, days
FROM monthly_consumption ORDER BY 1, 2, 3, 4
"""
UPSERT = """
INSERT INTO daily_consumption AS d (metering_point_id, service, register, local_day,
                                    quantity_milli, amount_nano, pieces)
VALUES (%s, %s, %s, %s, %s, 0, 1)
ON CONFLICT (metering_point_id, service, register, local_day) DO UPDATE
SET quantity_milli = d.quantity_milli + excluded.quantity_milli, pieces = d.pieces + 1
"""


def totals(conn: psycopg.Connection) -> list[tuple[Any, ...]]:
    return conn.execute(MONTHLY).fetchall()


def assert_exact(conn: psycopg.Connection) -> None:
    assert totals(conn) == conn.execute(GROUPED).fetchall()


@pytest.fixture
def conn(db_url: str):
    with psycopg.connect(db_url, autocommit=True) as c:
        yield c


def test_insert_update_delete_and_upsert_keep_the_totals(conn: psycopg.Connection) -> None:
    rows = [("MM1", "electricity", "1.8.1", date(2026, 3, d), 1000 * d) for d in (3, 4, 31)]
    rows += [("MM1", "electricity", "1.8.1", date(2026, 4, 1), 7), ("MM1", "water", "8.0",
             date(2026, 3, 9), 250), ("MM2", "electricity", "1.8.1", date(2026, 3, 2), 0)]
    with conn.cursor() as cur:
        cur.executemany(UPSERT, rows)
    assert totals(conn) == [
        ("MM1", "electricity", "1.8.1", date(2026, 3, 1), 38_000, date(2026, 3, 3), 3),
        ("MM1", "electricity", "1.8.1", date(2026, 4, 1), 7, date(2026, 4, 1), 1),
        ("MM1", "water", "8.0", date(2026, 3, 1), 250, date(2026, 3, 9), 1),
        ("MM2", "electricity", "1.8.1", date(2026, 3, 1), 0, date(2026, 3, 2), 1),
    ]
    conn.execute(UPSERT, ("MM1", "electricity", "1.8.1", date(2026, 3, 4), 500))  # upsert
    assert totals(conn)[0][4] == 38_500
    # an update that moves a row to another day, month and metering point
    conn.execute("UPDATE daily_consumption SET local_day = '2026-02-28', metering_point_id = 'MM3'"
                 " WHERE metering_point_id = 'MM1' AND local_day = '2026-03-03'")
    assert_exact(conn)
    conn.execute("UPDATE daily_consumption SET quantity_milli = quantity_milli * 2")
    assert_exact(conn)
    assert totals(conn)[0] == ("MM1", "electricity", "1.8.1", date(2026, 3, 1),
                               2 * (4_500 + 31_000), date(2026, 3, 4), 2)
    # deleting the last day of a month removes its total; deleting one day, the day only
    conn.execute("DELETE FROM daily_consumption WHERE local_day = '2026-04-01'")
    conn.execute("DELETE FROM daily_consumption WHERE local_day = '2026-03-04'")
    assert_exact(conn)
    assert ("MM1", "electricity", "1.8.1", date(2026, 3, 1), 62_000, date(2026, 3, 31), 1
            ) in totals(conn)
    assert not [r for r in totals(conn) if r[3] == date(2026, 4, 1)]
    # a statement in a rolled-back transaction leaves nothing behind
    with pytest.raises(psycopg.errors.DivisionByZero), conn.transaction():
        conn.execute("DELETE FROM daily_consumption")
        assert totals(conn) == []
        conn.execute("SELECT 1 / 0")
    assert_exact(conn)
    conn.execute("TRUNCATE daily_consumption")
    assert totals(conn) == []


def test_copy_fills_the_totals_of_many_keys(conn: psycopg.Connection) -> None:
    with conn.cursor() as cur, cur.copy(
            "COPY daily_consumption (metering_point_id, service, register, local_day,"
            " quantity_milli, amount_nano, pieces) FROM STDIN") as copy:
        for mp in range(200):
            for d in range(40):  # 1 March – 9 April
                day = date(2026, 3, 1) + timedelta(days=d)
                copy.write_row((f"MM{mp}", "water", "8.0", day, mp * 100 + d, 0, 1))
    assert len(totals(conn)) == 400
    assert_exact(conn)


_days = st.dates(min_value=date(2026, 1, 25), max_value=date(2026, 3, 5))
_keys = st.tuples(st.sampled_from(["MM1", "MM2"]), st.sampled_from(["1.8.1", "1.8.2"]), _days)
_ops = st.lists(st.one_of(
    st.tuples(st.just("upsert"), st.lists(st.tuples(_keys, st.integers(-5_000, 50_000)),
                                          min_size=1, max_size=6)),
    st.tuples(st.just("delete"), _keys),
    st.tuples(st.just("delete_month"), _days),
    st.tuples(st.just("shift"), _days, st.integers(-40, 40)),
    st.tuples(st.just("scale"), st.sampled_from(["MM1", "MM2"]), st.integers(-2, 3)),
), min_size=1, max_size=8)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_ops)
def test_any_sequence_of_writes_keeps_totals_equal_to_the_grouped_days(
        conn: psycopg.Connection, ops: list[tuple[Any, ...]]) -> None:
    conn.execute("TRUNCATE daily_consumption")
    for op in ops:
        if op[0] == "upsert":
            # one statement with several rows, the same key possibly twice in a batch: the
            # sink sums its rows first, as here
            merged: dict[tuple[str, str, date], int] = {}
            for key, qty in op[1]:
                merged[key] = merged.get(key, 0) + qty
            with conn.cursor() as cur:
                cur.execute(
                    "INSERT INTO daily_consumption AS d (metering_point_id, service, register,"
                    " local_day, quantity_milli, amount_nano, pieces)"
                    " SELECT m, 'electricity', r, day, q, 0, 1"
                    " FROM unnest(%s::text[], %s::text[], %s::date[], %s::bigint[])"
                    " AS u(m, r, day, q)"
                    " ON CONFLICT (metering_point_id, service, register, local_day) DO UPDATE"
                    " SET quantity_milli = d.quantity_milli + excluded.quantity_milli",
                    ([k[0] for k in merged], [k[1] for k in merged], [k[2] for k in merged],
                     list(merged.values())))
        elif op[0] == "delete":
            conn.execute("DELETE FROM daily_consumption WHERE metering_point_id = %s"
                         " AND register = %s AND local_day = %s", op[1])
        elif op[0] == "delete_month":
            conn.execute("DELETE FROM daily_consumption"
                         " WHERE date_trunc('month', local_day) = date_trunc('month', %s::date)",
                         (op[1],))
        elif op[0] == "shift":  # move a day's rows elsewhere, where no row of theirs is
            conn.execute(
                "UPDATE daily_consumption d SET local_day = d.local_day + %s"
                " WHERE d.local_day = %s AND NOT EXISTS (SELECT 1 FROM daily_consumption o"
                " WHERE o.metering_point_id = d.metering_point_id AND o.register = d.register"
                " AND o.local_day = d.local_day + %s)", (op[2], op[1], op[2]))
        else:
            conn.execute("UPDATE daily_consumption SET quantity_milli = quantity_milli * %s"
                         " WHERE metering_point_id = %s", (op[2], op[1]))
        assert_exact(conn)


def _seed_stream(conn: psycopg.Connection) -> None:
    for doc in json.loads(CATALOG.read_text()):
        conn.execute("INSERT INTO tariff_versions (tariff_code, valid_from, service, document)"
                     " VALUES (%s, %s, %s, %s)",
                     (doc["tariff_code"], doc["valid_from"], doc["service"], json.dumps(doc)))
    conn.execute("""
        INSERT INTO customers (customer_id, name, kind) VALUES ('100001', 'Amra H.', 'household');
        INSERT INTO metering_points (metering_point_id, address) VALUES ('MP1', 'Bulevar mira 1');
        INSERT INTO meters VALUES ('P1', 'electricity', 6, 1, '{1.8.0}');
        INSERT INTO meter_installations VALUES ('P1', 'MP1', '2025-01-01T00:00Z');
        INSERT INTO contracts VALUES
            ('C1E', '100001', 'MP1', 'electricity', 'EL-HH', '2025-01-01', NULL);
    """)


def test_the_stream_and_a_read_edit_keep_the_totals(conn: psycopg.Connection) -> None:
    _seed_stream(conn)

    def at(day: int, hour: int) -> datetime:  # UTC
        return datetime(2026, 3, day, hour, tzinfo=UTC)

    def read(when: datetime, milli: int) -> dict[str, str]:
        return {"meter_id": "P1", "register": "1.8.0", "read_at": when.isoformat(),
                "value": f"{milli // 1000}.{milli % 1000:03d}", "unit": "kWh", "source": "amr"}

    now = int(datetime(2026, 4, 2, tzinfo=UTC).timestamp())
    batches = [[read(at(30, 20), 100_000), read(at(30, 23), 103_000)],  # to 31 March 00:00 local
               [read(at(31, 6), 110_000), read(at(31, 21), 130_000), read(at(31, 23), 131_500)]]
    for batch in batches:  # the second batch adds to days the first wrote (the upsert)
        with conn.transaction():
            res = process_reads(conn, batch, channel="test", now=now)
        assert res.accepted == len(batch), res.outcomes
        assert_exact(conn)
    months = {r[3] for r in totals(conn)}
    assert months == {date(2026, 3, 1), date(2026, 4, 1)}  # 31 March 23:00 UTC is 1 April
    before = sum(r[4] for r in totals(conn))
    assert before == 31_500
    with conn.transaction():
        apply_read_edit(conn, meter_id="P1", register="1.8.0",
                        read_at=int(at(31, 6).timestamp()), value="120.000",
                        reason="misread digit", edited_by="ana",
                        now=datetime(2026, 4, 2, tzinfo=UTC))
    assert_exact(conn)
    assert sum(r[4] for r in totals(conn)) == before  # moved between days, not created


def test_a_recomputation_waits_for_a_concurrent_addition(db_url: str) -> None:
    """B deletes a day of a key while A, not yet committed, adds to another day of it: B's
    recomputation waits for A and counts A's addition."""
    key = ("MM1", "water", "8.0")
    with psycopg.connect(db_url, autocommit=True) as setup, setup.cursor() as cur:
        cur.executemany(UPSERT, [(*key, date(2026, 3, d), 1000) for d in (1, 2, 3)])
    done = threading.Event()

    def delete_day_one() -> None:
        with psycopg.connect(db_url, autocommit=True) as b:
            b.execute("DELETE FROM daily_consumption WHERE local_day = '2026-03-01'")
        done.set()

    with psycopg.connect(db_url) as a:
        a.execute(UPSERT, (*key, date(2026, 3, 2), 500))  # locks the month's total
        worker = threading.Thread(target=delete_day_one)
        worker.start()
        assert not done.wait(1.0)  # B waits for A
        a.commit()
        worker.join(10)
        assert done.is_set()
        assert totals(a) == [(*key, date(2026, 3, 1), 2_500, date(2026, 3, 2), 2)]
        assert_exact(a)
