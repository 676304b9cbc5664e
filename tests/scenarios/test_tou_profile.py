"""Load-profile meters (register 1.8.0, hourly) through the stream and the close, clock
pinned, on the embedded PostgreSQL: the TOU bands over both clock changes of 2026, a
Sunday and a District holiday in MT, month totals equal to the register advance, and the
invoice lines VT / MT worked out by hand.

Every meter uses one daily shape, by the local hour in which the hour starts: 5 kWh in
07–08, 7 kWh in 22–23, 1 kWh in every other hour (34 kWh on a 24-hour day). 07–08 is VT
in winter time and MT in summer time (households VT 07–13, 16–22 UTC+1 = 08–14, 17–23
CEST); 22–23 is the other way round. So a household working day gives
    winter: VT 11 × 1 + 5 = 16, MT 11 × 1 + 7 = 18;  summer: VT 11 + 7 = 18, MT 11 + 5 = 16,
and "other consumption" (VT 06–22 UTC+1 = 07–23 CEST)
    winter: VT 15 + 5 = 20, MT 7 + 7 = 14;  summer: VT 14 + 5 + 7 = 26, MT 8.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from billing.closer import close_period
from rating.calendar import LOCAL_TZ, local_midnight_epoch
from stream.pipeline import process_reads

CATALOG = json.loads((Path(__file__).resolve().parents[2] / "app/demo/catalog.json").read_text())
NOW = int(datetime(2026, 11, 2, 9, 0, tzinfo=UTC).timestamp())  # after every read
SHAPE = {7: 5_000, 22: 7_000}  # Wh by local starting hour; 1 kWh otherwise
# a single-rate tariff that forgot its 1.8.0 price
EL_X = {
    "tariff_code": "EL-X",
    "service": "electricity",
    "category": "public_lighting",
    "valid_from": "2024-01-01",
    "tou_scheme": "single",
    "demo": True,
    "components": [
        {
            "code": "energy_vt",
            "kind": "energy",
            "registers": ["1.8.1"],
            "price": "0.15",
            "unit": "kWh",
        },
        {"code": "metering_point_fee", "kind": "fixed_monthly", "price": "3.50"},
    ],
}


def seed(conn: psycopg.Connection) -> None:
    for doc in [*CATALOG, EL_X]:
        conn.execute(
            "INSERT INTO tariff_versions (tariff_code, valid_from, service, document)"
            " VALUES (%s, %s, %s, %s)",
            (doc["tariff_code"], doc["valid_from"], doc["service"], json.dumps(doc)),
        )
    conn.execute("""
        INSERT INTO customers (customer_id, name, kind) VALUES
            ('100001', 'Amra H.', 'household'), ('200001', 'Pekara Brčko d.o.o.', 'business'),
            ('300001', 'Javna rasvjeta', 'public'), ('300002', 'Rasvjeta parka', 'public');
        INSERT INTO metering_points (metering_point_id, address) VALUES
            ('MP1', 'Bulevar mira 1'), ('MP2', 'Trg mladih 3'), ('MP3', 'Park 1'),
            ('MP4', 'Park 2');
        INSERT INTO meters VALUES
            ('P1', 'electricity', 6, 1, '{1.8.0}'), ('P2', 'electricity', 6, 1, '{1.8.0}'),
            ('P3', 'electricity', 6, 1, '{1.8.0}'), ('P4', 'electricity', 6, 1, '{1.8.0}');
        INSERT INTO meter_installations VALUES
            ('P1', 'MP1', '2025-01-01T00:00Z'), ('P2', 'MP2', '2025-01-01T00:00Z'),
            ('P3', 'MP3', '2025-01-01T00:00Z'), ('P4', 'MP4', '2025-01-01T00:00Z');
        INSERT INTO contracts VALUES
            ('C1', '100001', 'MP1', 'electricity', 'EL-HH', '2025-01-01', NULL),
            ('C2', '200001', 'MP2', 'electricity', 'EL-OP', '2025-01-01', NULL),
            ('C3', '300001', 'MP3', 'electricity', 'EL-JR', '2025-01-01', NULL),
            ('C4', '300002', 'MP4', 'electricity', 'EL-X', '2025-01-01', NULL);
    """)


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_url) as c:
        seed(c)
        c.commit()
        yield c


def hourly_reads(meter: str, first: date, end: date, start_milli: int) -> list[dict[str, Any]]:
    """A read at every whole UTC hour from local midnight of `first` to that of `end`."""
    t, stop = local_midnight_epoch(first), local_midnight_epoch(end)
    value = start_milli
    out = [_read(meter, t, value)]
    while t < stop:
        value += SHAPE.get(datetime.fromtimestamp(t, UTC).astimezone(LOCAL_TZ).hour, 1_000)
        t += 3600
        out.append(_read(meter, t, value))
    return out


def _read(meter: str, t: int, milli: int) -> dict[str, Any]:
    at = datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")
    return {
        "meter_id": meter,
        "register": "1.8.0",
        "read_at": at,
        "unit": "kWh",
        "value": f"{milli // 1000}.{milli % 1000:03d}",
        "source": "amr",
    }


def push(conn: psycopg.Connection, reads: list[dict[str, Any]]) -> None:
    with conn.transaction():
        res = process_reads(conn, reads, channel="test", now=NOW)
    assert res.accepted == len(reads), res.reasons


def days(conn: psycopg.Connection, mp: str) -> dict[tuple[date, str], tuple[int, int]]:
    """(local day, register) → (kWh in thousandths, pieces)."""
    rows = conn.execute(
        "SELECT local_day, register, quantity_milli, pieces FROM daily_consumption"
        " WHERE metering_point_id = %s",
        (mp,),
    ).fetchall()
    return {(d, r): (q, p) for d, r, q, p in rows}


def kwh(values: dict[tuple[date, str], tuple[int, int]], day: date) -> dict[str, int]:
    return {r: q // 1000 for (d, r), (q, _) in values.items() if d == day}


def lines(conn: psycopg.Connection, customer: str) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT l.register, l.quantity_milli, l.unit_price_micro, l.amount_fen"
        " FROM invoice_lines l JOIN invoices i USING (invoice_number)"
        " WHERE i.customer_id = %s ORDER BY l.line_no",
        (customer,),
    ).fetchall()


def test_spring_clock_change_month_bands_and_invoice_by_hand(conn: psycopg.Connection) -> None:
    reads = hourly_reads("P1", date(2026, 3, 1), date(2026, 4, 1), 5_000_000)
    assert len(reads) == 31 * 24 - 1 + 1  # 743 hours in March 2026, 744 reads
    push(conn, reads)
    mp1 = days(conn, "MP1")
    assert kwh(mp1, date(2026, 3, 28)) == {"1.8.1": 16, "1.8.2": 18}  # Saturday, winter
    assert kwh(mp1, date(2026, 3, 29)) == {"1.8.2": 33}  # Sunday of 23 hours, all MT
    assert mp1[(date(2026, 3, 29), "1.8.2")] == (33_000, 23)
    assert kwh(mp1, date(2026, 3, 30)) == {"1.8.1": 18, "1.8.2": 16}  # Monday, summer time
    assert kwh(mp1, date(2026, 3, 1)) == {"1.8.2": 34}  # Sunday
    assert kwh(mp1, date(2026, 3, 9)) == {"1.8.2": 34}  # District Day, moved from Sunday 8th
    assert kwh(mp1, date(2026, 3, 10)) == {"1.8.1": 16, "1.8.2": 18}
    # Ramazanski bajram (20 March) is not a confirmed Brčko holiday: a normal Friday
    assert kwh(mp1, date(2026, 3, 20)) == {"1.8.1": 16, "1.8.2": 18}
    # 23 winter working days + 2 summer ones; MT also takes 4 Sundays, the holiday, the 29th
    vt, mt = 23 * 16 + 2 * 18, 23 * 18 + 2 * 16 + 5 * 34 + 33
    assert (vt, mt) == (404, 649)
    month = conn.execute(
        "SELECT register, sum(quantity_milli) FROM daily_consumption WHERE metering_point_id"
        " = 'MP1' GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert month == [("1.8.1", vt * 1000), ("1.8.2", mt * 1000)]
    advance = int(reads[-1]["value"].replace(".", "")) - 5_000_000
    assert advance == (vt + mt) * 1000 == 1_053_000
    raw = conn.execute(
        "SELECT register, count(*), sum(quantity_milli) FROM consumption_intervals"
        " WHERE meter_id = 'P1' GROUP BY 1"
    ).fetchall()
    assert raw == [("1.8.0", 743, advance)]  # the raw intervals stay on 1.8.0

    # business, "other consumption" scheme, 28–30 March only
    push(conn, hourly_reads("P2", date(2026, 3, 28), date(2026, 3, 31), 100_000))
    mp2 = days(conn, "MP2")
    assert kwh(mp2, date(2026, 3, 28)) == {"1.8.1": 20, "1.8.2": 14}
    assert kwh(mp2, date(2026, 3, 29)) == {"1.8.2": 33}
    assert kwh(mp2, date(2026, 3, 30)) == {"1.8.1": 26, "1.8.2": 8}

    res = close_period(conn, "2026-03", issued_on=date(2026, 4, 1), line_sources=[])
    assert "100001" not in res.skipped and "200001" not in res.skipped
    # VT 404 kWh × 0.1578 = 63.7512 → 63.75; MT 649 × 0.0789 = 51.2061 → 51.21; fee 3.50
    assert lines(conn, "100001") == [
        ("1.8.1", 404_000, 157_800, 6375),
        ("1.8.2", 649_000, 78_900, 5121),
        (None, 1_000, 3_500_000, 350),
    ]
    total = conn.execute(
        "SELECT net_fen, vat_fen, total_fen FROM invoices WHERE customer_id = '100001'"
    ).fetchone()
    assert total == (11846, 2014, 13860)  # VAT 17 % of 118.46 = 20.1382
    # VT 46 kWh × 0.1920 = 8.832 → 8.83; MT 55 × 0.0960 = 5.28; fee 8.00
    assert lines(conn, "200001") == [
        ("1.8.1", 46_000, 192_000, 883),
        ("1.8.2", 55_000, 96_000, 528),
        (None, 1_000, 8_000_000, 800),
    ]


def test_autumn_clock_change_day_has_25_hours(conn: psycopg.Connection) -> None:
    reads = hourly_reads("P1", date(2026, 10, 24), date(2026, 10, 27), 7_000_000)
    assert len(reads) == 24 + 25 + 24 + 1
    push(conn, reads)
    push(conn, hourly_reads("P2", date(2026, 10, 24), date(2026, 10, 27), 0))
    mp1, mp2 = days(conn, "MP1"), days(conn, "MP2")
    assert kwh(mp1, date(2026, 10, 24)) == {"1.8.1": 18, "1.8.2": 16}  # Saturday, summer
    assert mp1[(date(2026, 10, 25), "1.8.2")] == (35_000, 25)  # 02–03 twice, Sunday: MT
    assert kwh(mp1, date(2026, 10, 25)) == {"1.8.2": 35}
    assert kwh(mp1, date(2026, 10, 26)) == {"1.8.1": 16, "1.8.2": 18}  # Monday, winter
    assert kwh(mp2, date(2026, 10, 24)) == {"1.8.1": 26, "1.8.2": 8}
    assert kwh(mp2, date(2026, 10, 26)) == {"1.8.1": 20, "1.8.2": 14}
    advance = int(reads[-1]["value"].replace(".", "")) - 7_000_000
    assert sum(q for q, _ in mp1.values()) == advance == 103_000


def test_single_rate_tariff_keeps_1_8_0_and_needs_its_price(conn: psycopg.Connection) -> None:
    push(conn, hourly_reads("P3", date(2026, 3, 28), date(2026, 3, 30), 0))
    push(conn, hourly_reads("P4", date(2026, 3, 28), date(2026, 3, 30), 0))
    assert days(conn, "MP3") == {
        (date(2026, 3, 28), "1.8.0"): (34_000, 24),
        (date(2026, 3, 29), "1.8.0"): (33_000, 23),
    }
    assert set(days(conn, "MP4")) == {(date(2026, 3, 28), "1.8.0"), (date(2026, 3, 29), "1.8.0")}
    res = close_period(conn, "2026-03", issued_on=date(2026, 4, 1), line_sources=[])
    # 67 kWh × 0.1650 = 11.055 → 11.06; fee 3.50
    assert lines(conn, "300001") == [
        ("1.8.0", 67_000, 165_000, 1106),
        (None, 1_000, 3_500_000, 350),
    ]
    assert "no energy price for register 1.8.0" in res.skipped["300002"]
