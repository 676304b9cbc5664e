"""Generated demo data through the real import, then the monthly close."""

from __future__ import annotations

from datetime import UTC, date, datetime

import psycopg
import pytest

from app.demo_data import demo_periods, generate_demo
from ingest.file_import import import_document
from rating.calendar import month_bounds

NOW = int(datetime(2026, 4, 2, tzinfo=UTC).timestamp())


@pytest.fixture
def conn(db_url: str):
    with psycopg.connect(db_url) as c:
        yield c


def test_small_demo_imports_cleanly_and_closes(conn: psycopg.Connection) -> None:
    doc = generate_demo(customers=20, months=3, end_period="2026-03", seed=11)
    report = import_document(conn, doc, now=NOW, channel="demo")
    assert report.rejected == 0, report.summary()
    assert report.sections["customers"].created == 20
    assert report.sections["readings"].created == 20 * 3 * 4
    # a water meter wrapped past 99999 m³ and its month is still an ordinary few m³
    assert conn.execute(
        "SELECT count(*) FROM (SELECT value_milli < lag(value_milli) OVER (PARTITION BY"
        " meter_id ORDER BY read_at) AS wrap FROM readings WHERE register = '8.0') q"
        " WHERE wrap"
    ).fetchone() == (1,)
    wrapped = conn.execute(
        "SELECT max(m) FROM (SELECT sum(quantity_milli) AS m FROM consumption_intervals"
        " WHERE service = 'water' GROUP BY meter_id, date_trunc('month', local_day)) q"
    ).fetchone()
    assert wrapped is not None and wrapped[0] < 100_000_000
    demo = conn.execute(
        "SELECT password_hash FROM customers WHERE customer_id = '100001'"
    ).fetchone()
    assert demo is not None and demo[0].startswith("$argon2id$")
    from api.security import verify_password

    assert verify_password(demo[0], "demo")

    again = import_document(conn, doc, now=NOW, channel="demo")
    assert again.changed == 0 and again.rejected == 0

    from billing.closer import close_period

    for period in demo_periods("2026-03", 3):
        issued = month_bounds(period)[1]
        result = close_period(conn, period, issued_on=issued)
        assert result.invoices_created == 20, (period, result.skipped)
        assert result.unbilled_days == 0
    per_customer = conn.execute(
        "SELECT customer_id, count(*), count(DISTINCT period) FROM invoices GROUP BY 1"
    ).fetchall()
    assert len(per_customer) == 20
    assert {(n, p) for _, n, p in per_customer} == {(3, 3)}
    lines = conn.execute(
        "SELECT DISTINCT service FROM invoice_lines l JOIN invoices i USING (invoice_number)"
        " WHERE i.customer_id = '100001'"
    ).fetchall()
    # no payments between the closes: later invoices carry late-payment interest (#5)
    assert sorted(r[0] for r in lines) == ["electricity", "interest", "waste", "water"]
    assert date.fromisoformat(doc["contracts"][0]["valid_from"]) == date(2026, 1, 1)
