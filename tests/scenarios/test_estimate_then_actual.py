"""Estimation at close, then the actual read: the next invoice bills the difference, and
over the two periods exactly the register advance is billed (real PostgreSQL)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from app.database import with_database
from billing.adjustments import rebill_after_write, rebill_lines, waiting_periods
from billing.closer import CloseResult, close_period
from rating.calendar import LOCAL_TZ
from rating.money import line_amount_fen
from tests.integration.test_close import CATALOG, add_tariffs, push, read


def close(conn: psycopg.Connection, period: str, issued_on: date) -> CloseResult:
    """The close with this issue's line source and after-write step only."""
    return close_period(conn, period, issued_on=issued_on, line_sources=[rebill_lines],
                        after_write=[rebill_after_write])


def seed(conn: psycopg.Connection) -> None:
    add_tariffs(conn, CATALOG)
    conn.execute("""
        INSERT INTO customers (customer_id, name, kind) VALUES ('100001', 'Amra H.', 'household');
        INSERT INTO metering_points (metering_point_id, address) VALUES ('MP1', 'Bulevar mira 1');
        INSERT INTO meters VALUES ('E1', 'electricity', 6, 1, '{1.8.1}');
        INSERT INTO meter_installations VALUES ('E1', 'MP1', '2025-01-01T00:00Z');
        INSERT INTO contracts VALUES
            ('C1E', '100001', 'MP1', 'electricity', 'EL-HH', '2025-01-01', NULL);
    """)


@pytest.fixture
def conn(db_url: str):
    with psycopg.connect(db_url) as c:
        seed(c)
        c.commit()
        yield c


def billed_for(conn: psycopg.Connection, period: str) -> tuple[int, int]:
    """(quantity, amount) billed for `period`: its invoice's kWh lines and the later
    adjustments that target it."""
    own = conn.execute(
        "SELECT coalesce(sum(l.quantity_milli), 0), coalesce(sum(l.amount_fen), 0)"
        " FROM invoices i JOIN invoice_lines l USING (invoice_number)"
        " WHERE i.period = %s AND l.unit = 'kWh' AND l.component NOT LIKE 'korekcija:%%'",
        (period,)).fetchone()
    adj = conn.execute(
        "SELECT coalesce(sum(quantity_milli), 0), coalesce(sum(amount_fen), 0)"
        " FROM rebill_adjustments WHERE target_period = %s AND invoice_number IS NOT NULL",
        (period,)).fetchone()
    assert own is not None and adj is not None
    return int(own[0]) + int(adj[0]), int(own[1]) + int(adj[1])


def measured(conn: psycopg.Connection, first: str, end: str) -> int:
    row = conn.execute("SELECT coalesce(sum(quantity_milli), 0) FROM daily_consumption"
                       " WHERE local_day >= %s AND local_day < %s", (first, end)).fetchone()
    assert row is not None
    return int(row[0])


def lines_of(conn: psycopg.Connection, period: str) -> list[tuple[str, int, int, str]]:
    return [(r[0], r[1], r[2], r[3]) for r in conn.execute(
        "SELECT l.component, l.quantity_milli, l.amount_fen, l.description"
        " FROM invoices i JOIN invoice_lines l USING (invoice_number)"
        " WHERE i.period = %s ORDER BY l.line_no", (period,))]


def test_estimate_then_actual_read_bills_the_difference(conn: psycopg.Connection) -> None:
    push(conn, [read("E1", "1.8.1", "1000", "2026-03-01T00:00:00+01:00"),
                read("E1", "1.8.1", "1100", "2026-03-21T00:00:00+01:00")])
    close(conn, "2026-03", date(2026, 4, 1))
    lines = lines_of(conn, "2026-03")
    # 100 kWh over 20 measured days = 5 kWh/day; 21–31 March (11 days; 29 March has 23
    # hours, counted by the second: 10 days 23 h) → 5 × (263/24) = 54.792 kWh
    assert [ln[:3] for ln in lines] == [("energy_vt_higher", 100_000, 1578),
                                        ("metering_point_fee", 1000, 350),
                                        ("energy_vt_higher", 54_792, 865)]
    assert lines[2][3].endswith("(procjena)") and not lines[0][3].endswith("(procjena)")
    est = conn.execute("SELECT register, quantity_milli, basis, invoice_number"
                       " FROM consumption_estimates").fetchall()
    assert est == [("1.8.1", 54_792, "recent_average", "2026-000001")]
    conn.commit()

    # the actual read on 11 April: its interval fills 21 March – 10 April
    push(conn, [read("E1", "1.8.1", "1180", "2026-04-11T00:00:00+02:00")])
    assert conn.execute("SELECT metering_point_id, service, period, cause FROM rebill_queue"
                        ).fetchall() == [("MP1", "electricity", "2026-03", "data")]
    march_actual = measured(conn, "2026-03-01", "2026-04-01")
    close(conn, "2026-04", date(2026, 5, 1))
    april = lines_of(conn, "2026-04")
    korekcija = [ln for ln in april if ln[0].startswith("korekcija:")]
    assert len(korekcija) == 1
    assert korekcija[0][1] == march_actual - 154_792
    assert korekcija[0][3].startswith("Korekcija za 2026-03: ")
    assert billed_for(conn, "2026-03")[0] == march_actual
    assert conn.execute("SELECT count(*) FROM rebill_queue").fetchone() == (0,)
    # closing April again changes nothing; the next month bills no second correction
    again = close(conn, "2026-04", date(2026, 5, 2))
    assert again.invoices_created == 0
    push(conn, [read("E1", "1.8.1", "1300", "2026-06-01T00:00:00+02:00")])
    close(conn, "2026-05", date(2026, 6, 1))
    may = lines_of(conn, "2026-05")
    assert [ln[3][:21] for ln in may if ln[0].startswith("korekcija:")] == [
        "Korekcija za 2026-04:"]
    assert billed_for(conn, "2026-03")[0] == march_actual
    assert billed_for(conn, "2026-04")[0] == measured(conn, "2026-04-01", "2026-05-01")


def test_estimate_waits_until_the_period_is_read_to_its_end(conn: psycopg.Connection) -> None:
    push(conn, [read("E1", "1.8.1", "1000", "2026-03-01T00:00:00+01:00"),
                read("E1", "1.8.1", "1100", "2026-03-11T00:00:00+01:00")])
    close(conn, "2026-03", date(2026, 4, 1))
    # a read inside the estimated days changes March but does not complete it
    push(conn, [read("E1", "1.8.1", "1150", "2026-03-21T00:00:00+01:00")])
    close(conn, "2026-04", date(2026, 5, 1))
    assert not [ln for ln in lines_of(conn, "2026-04") if ln[0].startswith("korekcija:")]
    assert conn.execute("SELECT period FROM rebill_queue").fetchall() == [("2026-03",)]
    push(conn, [read("E1", "1.8.1", "1400", "2026-05-01T00:00:00+02:00")])
    close(conn, "2026-05", date(2026, 6, 1))
    targets = conn.execute("SELECT DISTINCT target_period FROM rebill_adjustments"
                           " ORDER BY 1").fetchall()
    assert targets == [("2026-03",), ("2026-04",)]
    assert billed_for(conn, "2026-03")[0] == measured(conn, "2026-03-01", "2026-04-01")
    assert billed_for(conn, "2026-04")[0] == measured(conn, "2026-04-01", "2026-05-01")
    assert billed_for(conn, "2026-03")[0] + billed_for(conn, "2026-04")[0] == 400_000


@contextmanager
def fresh_database(admin_url: str, template: str) -> Iterator[str]:
    """A new database per Hypothesis example (posted journal entries cannot be truncated)."""
    name = f"billing_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(template)))
    try:
        yield with_database(admin_url, name)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))


# read times: days after 1 March 00:00 local (1 March + 61 days = 1 May)
_TIMES = st.lists(st.integers(min_value=1, max_value=60), min_size=0, max_size=3, unique=True)


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(days=_TIMES, steps=st.lists(st.integers(min_value=0, max_value=40_000), min_size=4,
                                   max_size=4),
       batches=st.lists(st.integers(min_value=0, max_value=3), min_size=5, max_size=5))
def test_estimates_and_actual_reads_bill_exactly_the_advance(
    admin_url: str, template_db: str, days: list[int], steps: list[int],
    batches: list[int],
) -> None:
    """Reads on 1 March, on random days between, and on 1 May, delivered at random points
    among the closes of March, April, May and June: once all are in, March + April are
    billed for exactly the register advance, in quantity and in amount (a net credit that
    no invoice could absorb yet is billed once a larger invoice comes)."""
    with fresh_database(admin_url, template_db) as url, psycopg.connect(url) as conn:
        seed(conn)
        start = datetime(2026, 3, 1, tzinfo=LOCAL_TZ)
        moments = [0, *sorted(days), 61]
        value = 1_000_000
        reads = []
        for i, d in enumerate(moments):
            value += steps[i % 4] * (1 if i else 0)
            at = (start + timedelta(days=d)).isoformat()
            reads.append(read("E1", "1.8.1", f"{value // 1000}.{value % 1000:03d}", at))
        first_value = 1_000_000
        pending = list(reads)
        for month, issued in (("2026-03", date(2026, 4, 1)), ("2026-04", date(2026, 5, 1)),
                              ("2026-05", date(2026, 6, 1)), ("2026-06", date(2026, 7, 1))):
            n = len(pending) if month == "2026-06" else min(len(pending), batches.pop())
            if n:
                push(conn, pending[:n])
                pending = pending[n:]
            close(conn, month, issued)
        if waiting_periods(conn):
            # a net credit larger than the invoices so far waits; a larger bill absorbs it
            push(conn, [read("E1", "1.8.1", f"{value // 1000 + 2000}.{value % 1000:03d}",
                             "2026-07-01T00:00:00+02:00")])
            close(conn, "2026-07", date(2026, 8, 1))
            assert waiting_periods(conn) == []
        advance = value - first_value
        q_march, a_march = billed_for(conn, "2026-03")
        q_april, a_april = billed_for(conn, "2026-04")
        assert q_march + q_april == advance
        assert q_march == measured(conn, "2026-03-01", "2026-04-01")
        rows = conn.execute(
            "SELECT local_day < '2026-04-01', sum(quantity_milli) FROM daily_consumption"
            " WHERE local_day < '2026-05-01' GROUP BY 1 ORDER BY 1 DESC").fetchall()
        expected = {True: 157_800, False: 126_200}  # VT higher (March), lower (April) µKM
        assert a_march == line_amount_fen(int(rows[0][1]), expected[True])
        assert a_april == line_amount_fen(int(rows[1][1]), expected[False]) if len(rows) > 1 \
            else a_april == 0
