"""End to end on the embedded PostgreSQL, clock pinned: two months of reads for a household
with electricity, water and waste → close → invoices checked line by line against figures
worked out by hand → a payment → the portal shows balance, last payment and the change.
"""

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

from api.main import create_app
from app.settings import Settings
from billing.closer import close_period
from billing.payments import record_payments
from ingest.file_import import import_document
from rating.calendar import LOCAL_TZ

CATALOG = json.loads((Path(__file__).resolve().parents[2] / "app/demo/catalog.json").read_text())
CLOCK = datetime(2026, 4, 10, 9, 0, tzinfo=UTC)


def daily_reads(
    meter: str, register: str, unit: str, start: float, month_totals: list[float], first: date
) -> list[dict[str, str]]:
    """A read at every local midnight; each month's advance spread unevenly over its days."""
    out: list[dict[str, str]] = []
    value = round(start * 1000)
    day = first
    out.append(_read(meter, register, unit, day, value))
    for total in month_totals:
        month = day.month
        days = []
        d = day
        while d.month == month:
            days.append(d)
            d += timedelta(days=1)
        milli = round(total * 1000)
        weights = [1 + (i % 5) for i in range(len(days))]
        shares = [milli * w // sum(weights) for w in weights]
        shares[-1] += milli - sum(shares)
        for d, share in zip(days, shares, strict=True):
            value += share
            out.append(_read(meter, register, unit, d + timedelta(days=1), value))
        day = d + timedelta(days=1)
    return out


def _read(meter: str, register: str, unit: str, d: date, milli: int) -> dict[str, str]:
    at = datetime(d.year, d.month, d.day, tzinfo=LOCAL_TZ).isoformat()
    return {
        "meter_id": meter,
        "register": register,
        "read_at": at,
        "value": f"{milli // 1000}.{milli % 1000:03d}",
        "unit": unit,
        "source": "amr",
    }


def document() -> dict[str, Any]:
    feb1 = date(2026, 2, 1)
    reads = (
        daily_reads("E-1", "1.8.1", "kWh", 10234.5, [250.0, 212.345], feb1)
        + daily_reads("E-1", "1.8.2", "kWh", 5120.25, [120.0, 98.765], feb1)
        + daily_reads("W-1", "8.0", "m3", 812.0, [11.0, 12.5], feb1)
    )
    inst = [{"metering_point_id": "MP-1", "installed_at": "2026-01-01T00:00:00+01:00"}]
    return {
        "tariffs": CATALOG,
        "customers": [
            {
                "customer_id": "100001",
                "name": "Amra Hodžić",
                "kind": "household",
                "address": "Bulevar mira 12, Brčko",
                "password": "demo",
            }
        ],
        "metering_points": [
            {
                "metering_point_id": "MP-1",
                "address": "Bulevar mira 12, Brčko",
                "latitude": 44.8725,
                "longitude": 18.8101,
                "household_members": 3,
            }
        ],
        "meters": [
            {
                "meter_id": "E-1",
                "service": "electricity",
                "digits": 6,
                "multiplier": 1,
                "registers": ["1.8.1", "1.8.2"],
                "installations": inst,
            },
            {
                "meter_id": "W-1",
                "service": "water",
                "digits": 5,
                "multiplier": 1,
                "registers": ["8.0"],
                "installations": inst,
            },
        ],
        "contracts": [
            {
                "contract_id": f"K-{s}",
                "customer_id": "100001",
                "metering_point_id": "MP-1",
                "service": s,
                "tariff_code": t,
                "valid_from": "2026-01-01",
            }
            for s, t in (("electricity", "EL-HH"), ("water", "W-HH"), ("waste", "WA-HH"))
        ],
        "readings": reads,
    }


@pytest.fixture
def pool(db_url: str) -> Iterator[ConnectionPool]:
    with ConnectionPool(db_url, min_size=1, max_size=4) as p:
        yield p


def lines_of(conn: psycopg.Connection, number: str) -> list[tuple[Any, ...]]:
    return conn.execute(
        """SELECT service, component, register, quantity_milli, unit_price_micro, amount_fen
           FROM invoice_lines WHERE invoice_number = %s ORDER BY line_no""",
        (number,),
    ).fetchall()


def test_month_of_reads_to_invoice_payment_and_portal(pool: ConnectionPool) -> None:
    now = int(CLOCK.timestamp())
    with pool.connection() as conn:
        report = import_document(conn, document(), now=now)
        assert report.rejected == 0, report.summary()
        feb = close_period(conn, "2026-02", issued_on=date(2026, 3, 1), payment_days=15)
        mar = close_period(conn, "2026-03", issued_on=date(2026, 4, 1), payment_days=15)
        assert (feb.invoices_created, mar.invoices_created) == (1, 1)

        # February, higher season, by hand:
        #   VT 250.000 kWh × 0.1578 = 39.45;  MT 120.000 × 0.0789 = 9.468 → 9.47;  fee 3.50
        #   water 11.000 m³ × 1.068376 = 11.752136 → 11.75;  fee 2.50;  waste 9.00
        #   net 75.67, VAT 17 % 12.8639 → 12.86, total 88.53
        assert lines_of(conn, "2026-000001") == [
            ("electricity", "energy_vt_higher", "1.8.1", 250000, 157800, 3945),
            ("electricity", "energy_mt_higher", "1.8.2", 120000, 78900, 947),
            ("electricity", "metering_point_fee", None, 1000, 3500000, 350),
            ("water", "water_sewage", "8.0", 11000, 1068376, 1175),
            ("water", "metering_point_fee", None, 1000, 2500000, 250),
            ("waste", "waste_household", None, 1000, 9000000, 900),
        ]
        # March: VT 212.345 × 0.1578 = 33.507041 → 33.51; MT 98.765 × 0.0789 = 7.7925585 → 7.79
        #   water 12.500 × 1.068376 = 13.3547 → 13.35; net 69.65; VAT 11.8405 → 11.84; total 81.49
        assert [line[5] for line in lines_of(conn, "2026-000002")] == [
            3351,
            779,
            350,
            1335,
            250,
            900,
            40,  # late-payment interest on February's 88.53 KM, 17–31 March: 15 × 0.03 % (#5)
        ]
        totals = conn.execute(
            "SELECT invoice_number, net_fen, vat_fen, total_fen, due_on FROM invoices ORDER BY 1"
        ).fetchall()
        assert totals == [
            ("2026-000001", 7567, 1286, 8853, date(2026, 3, 16)),
            ("2026-000002", 7005, 1184, 8189, date(2026, 4, 16)),  # + 0.40 interest, VAT 0
        ]

        # the same close again creates nothing
        again = close_period(conn, "2026-03", issued_on=date(2026, 4, 2), payment_days=15)
        assert again.invoices_created == 0

        ref = conn.execute(
            "SELECT payment_reference FROM invoices WHERE invoice_number = '2026-000001'"
        ).fetchone()
        with conn.transaction():
            out = record_payments(
                conn,
                [
                    {
                        "payment_id": "BANK-77",
                        "reference": ref[0],
                        "paid_on": "2026-03-20",
                        "amount": "88.53",
                    }
                ],
                channel="bank",
            )
        assert [o.status for o in out] == ["accepted"]

    app = create_app(Settings(cookie_secure=True), pool, clock=lambda: CLOCK)
    with TestClient(app, base_url="https://testserver") as client:
        assert client.get("/api/v1/portal/summary").status_code == 401
        login = client.post(
            "/api/v1/portal/login", json={"customer_id": "100001", "password": "demo"}
        )
        assert login.status_code == 200
        summary = client.get("/api/v1/portal/summary").json()
    assert summary["balance"] == "81.89"  # March's 81.49 KM + 0.40 KM interest (#5)
    assert summary["last_payment"] == {"date": "2026-03-20", "amount": "88.53"}
    assert summary["last_month"]["period"] == "2026-03"
    assert summary["previous_month"]["period"] == "2026-02"
    el = summary["last_month"]["services"]["electricity"]
    # 311.110 kWh; net 44.80 × 1.17 = 52.416 → 52.42 (February: 52.42 × 1.17 → 61.33)
    assert el == {"quantity": "311.110", "unit": "kWh", "amount": "52.42"}
    assert summary["last_month"]["services"]["water"]["amount"] == "18.54"
    assert summary["change_percent"]["electricity"] == pytest.approx(-14.5)
    assert summary["change_percent"]["water"] == pytest.approx(11.2)
    assert summary["change_percent"]["waste"] == pytest.approx(0.0)
