"""Tariffs at depth through the real chain on PostgreSQL: reads → daily consumption (and
maximum-demand reads in `readings`) → monthly close → invoice lines, VAT rows and totals,
checked against figures worked out by hand (the same figures as in
tests/unit/test_calculation_depth.py where the inputs are the same).

Customers: a 10 kV business (billing power, excess reactive energy, a VAT-exempt fee, a
current-transformer meter with multiplier 40), a social household (20 % discount, closed
in March and in April across the season change on 1 April) and a household on graduated
water tiers whose prices change on 16 March.
"""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Json

from billing.closer import close_period
from billing.rate_check import explain, load_period, rate
from stream.pipeline import process_reads
from tests.integration.test_close import add_tariffs
from tests.unit.test_calculation_depth import EL_10KV, EL_HH_SOC, W_TIER

# the close alone: other line sources (estimates, interest) and after-write steps have their
# own tests and would add lines to these hand figures
ALONE: dict[str, Any] = {"line_sources": [], "after_write": []}
NOW = int(datetime(2026, 7, 1, tzinfo=UTC).timestamp())
W_TIER_16_MARCH: dict[str, Any] = copy.deepcopy(W_TIER)
W_TIER_16_MARCH["valid_from"] = "2026-03-16"
W_TIER_16_MARCH["components"][0]["tiers"] = [
    {"up_to": "10", "price": "0.90"}, {"up_to": "20", "price": "1.30"},
    {"up_to": None, "price": "1.70"}]  # fmt: skip

MARCH_1, APRIL_1, MAY_1 = ("2026-03-01T00:00:00+01:00", "2026-04-01T00:00:00+02:00",
                           "2026-05-01T00:00:00+02:00")  # fmt: skip


def read(meter: str, register: str, value: str, at: str, unit: str = "kWh") -> dict[str, str]:
    return {"meter_id": meter, "register": register, "read_at": at, "value": value,
            "unit": unit, "source": "amr"}


READS = [
    # 10 kV, multiplier 40: VT 200 → 8000 kWh, MT 100 → 4000 kWh, 3.8.0 125 → 5000 kvarh
    read("E10", "1.8.1", "1000.000", MARCH_1), read("E10", "1.8.1", "1200.000", APRIL_1),
    read("E10", "1.8.2", "500.000", MARCH_1), read("E10", "1.8.2", "600.000", APRIL_1),
    read("E10", "3.8.0", "300.000", MARCH_1, "kvarh"),
    read("E10", "3.8.0", "425.000", APRIL_1, "kvarh"),
    # social household: March VT 212.345 / MT 98.765, April VT 100 / MT 50
    read("ES", "1.8.1", "5000.000", MARCH_1), read("ES", "1.8.1", "5212.345", APRIL_1),
    read("ES", "1.8.1", "5312.345", MAY_1),
    read("ES", "1.8.2", "3000.000", MARCH_1), read("ES", "1.8.2", "3098.765", APRIL_1),
    read("ES", "1.8.2", "3148.765", MAY_1),
    # tiered water: 9 m³ over 1–15 March, 14 m³ over 16–31 March
    read("WT", "8.0", "500.000", MARCH_1, "m3"),
    read("WT", "8.0", "509.000", "2026-03-16T00:00:00+01:00", "m3"),
    read("WT", "8.0", "523.000", APRIL_1, "m3"),
]  # fmt: skip

# Maximum demand (1.6.0, not cumulative) as the stream stores it: raw register values, the
# multiplier applies. The read at 00:00 on 1 March closes February; the one at 00:00 on
# 1 April closes 31 March.
DEMAND = [
    ("2026-03-01T00:00:00+01:00", 2_000),  # 80 kW, February's
    ("2026-03-03T12:15:00+01:00", 950),  # 38 kW
    ("2026-03-17T10:00:00+01:00", 1_050),  # 42 kW
    ("2026-04-01T00:00:00+02:00", 1_060),  # 42.4 kW: March's maximum
    ("2026-04-20T10:00:00+02:00", 800),  # 32 kW: April's maximum
]


def seed(conn: psycopg.Connection, *, demand: bool = True) -> None:
    add_tariffs(conn, [EL_10KV, EL_HH_SOC, W_TIER, W_TIER_16_MARCH])
    conn.execute("""
        INSERT INTO customers (customer_id, name, kind) VALUES
            ('200010', 'Livnica Brčko d.o.o.', 'business'),
            ('100009', 'Fata S.', 'household'), ('100020', 'Mirsad T.', 'household');
        INSERT INTO metering_points (metering_point_id, address) VALUES
            ('MP-10KV', 'Industrijska zona 4'), ('MP-SOC', 'Banije 7'), ('MP-W', 'Rahić 12');
        INSERT INTO meters VALUES
            ('E10', 'electricity', 6, 40, '{1.8.1,1.8.2,3.8.0,1.6.0}'),
            ('ES', 'electricity', 6, 1, '{1.8.1,1.8.2}'), ('WT', 'water', 5, 1, '{8.0}');
        INSERT INTO meter_installations VALUES
            ('E10', 'MP-10KV', '2025-01-01T00:00Z'), ('ES', 'MP-SOC', '2025-01-01T00:00Z'),
            ('WT', 'MP-W', '2025-01-01T00:00Z');
        INSERT INTO contracts VALUES
            ('C-10', '200010', 'MP-10KV', 'electricity', 'EL-10KV', '2026-01-01', NULL),
            ('C-SOC', '100009', 'MP-SOC', 'electricity', 'EL-HH-SOC', '2025-01-01', NULL),
            ('C-W', '100020', 'MP-W', 'water', 'W-TIER', '2025-01-01', NULL);
    """)
    with conn.transaction():
        res = process_reads(conn, READS, channel="test", now=NOW)
    assert [o.status for o in res.outcomes] == ["accepted"] * len(READS), res.outcomes
    if demand:
        insert_demand(conn, DEMAND)


def insert_demand(conn: psycopg.Connection, rows: list[tuple[str, int]]) -> None:
    for at, milli in rows:
        conn.execute("INSERT INTO readings VALUES ('E10', '1.6.0', %s, %s, 'kW', 'amr', %s)",
                     (at, milli, at))


@pytest.fixture
def conn(db_url: str):
    with psycopg.connect(db_url) as c:
        seed(c)
        c.commit()
        yield c


def invoice(conn: psycopg.Connection, customer: str, period: str
            ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], tuple[Any, ...]]:
    number, *totals = conn.execute(
        "SELECT invoice_number, net_fen, vat_fen, total_fen FROM invoices"
        " WHERE customer_id = %s AND period = %s", (customer, period)).fetchone() or (None,)
    lines = conn.execute(
        "SELECT component, register, quantity_milli, unit, unit_price_micro, amount_fen,"
        " vat_rate FROM invoice_lines WHERE invoice_number = %s ORDER BY line_no",
        (number,)).fetchall()
    vat = conn.execute("SELECT vat_rate, base_fen, vat_fen FROM invoice_vat"
                       " WHERE invoice_number = %s ORDER BY vat_rate", (number,)).fetchall()
    return lines, vat, tuple(totals)


D17, D0 = Decimal("17.00"), Decimal("0.00")


def test_march_close_of_power_reactive_discount_and_tiers(conn: psycopg.Connection) -> None:
    res = close_period(conn, "2026-03", issued_on=date(2026, 4, 2), **ALONE)
    assert (res.invoices_created, res.skipped) == (3, {})

    lines, vat, totals = invoice(conn, "200010", "2026-03")
    # VT 8000 × 0.12 = 960.00, MT 4000 × 0.06 = 240.00, power 42.4 kW × 9.50 = 402.80,
    # reactive 5000 − 0.3287 × 12000 = 1055.6 kvarh × 0.025 = 26.39, fee 8.00 exempt
    assert lines == [
        ("energy_vt", "1.8.1", 8_000_000, "kWh", 120_000, 96_000, D17),
        ("energy_mt", "1.8.2", 4_000_000, "kWh", 60_000, 24_000, D17),
        ("billing_power", None, 42_400, "kW", 9_500_000, 40_280, D17),
        ("reactive", "3.8.0", 1_055_600, "kvarh", 25_000, 2_639, D17),
        ("metering_point_fee", None, 1000, "month", 8_000_000, 800, D0),
    ]
    # 17 % of 1629.19 = 276.9623 → 276.96; the exempt fee has its own VAT row at 0
    assert vat == [(D0, 800, 0), (D17, 162_919, 27_696)]
    assert totals == (163_719, 27_696, 191_415)

    lines, vat, totals = invoice(conn, "100009", "2026-03")
    assert [(ln[0], ln[5]) for ln in lines] == [
        ("energy_vt_higher", 3_351), ("energy_vt_higher_discount", -670),
        ("energy_mt_higher", 779), ("energy_mt_higher_discount", -156),
        ("metering_point_fee", 350)]
    assert totals == (3_654, 621, 4_275)
    description = conn.execute(
        "SELECT description FROM invoice_lines WHERE component = 'energy_vt_higher_discount'"
    ).fetchone()
    assert description == ("Popust (socijalna kategorija) 20 %",)

    # tiers prorated 15/31 and 16/31 around the price change on 16 March (see the unit test)
    lines, vat, totals = invoice(conn, "100020", "2026-03")
    assert [(ln[2], ln[4], ln[5]) for ln in lines] == [
        (4_839, 800_000, 387), (4_161, 1_200_000, 499),
        (5_161, 900_000, 464), (5_162, 1_300_000, 671), (3_677, 1_700_000, 625),
        (1000, 2_500_000, 250)]
    assert totals == (2_896, 492, 3_388)  # 17 % of 28.96 = 4.9232 → 4.92

    # booked in the ledger in balance: the discounts lower the revenue, not the receivable
    for customer, total in (("100009", 4_275), ("200010", 191_415)):
        booked = conn.execute(
            "SELECT sum(l.debit_fen), sum(l.credit_fen) FROM journal_lines l"
            " JOIN journal_entries e USING (entry_number) JOIN invoices i"
            " ON i.invoice_number = e.source_document"
            " WHERE e.kind = 'invoice' AND i.customer_id = %s", (customer,)).fetchone()
        assert booked == (total, total)


def test_april_after_the_season_change(conn: psycopg.Connection) -> None:
    close_period(conn, "2026-03", issued_on=date(2026, 4, 2), **ALONE)
    res = close_period(conn, "2026-04", issued_on=date(2026, 5, 2), **ALONE)
    # the business has no April energy reads yet (power and fee only), water the fee only
    assert res.skipped == {}
    lines, _, totals = invoice(conn, "100009", "2026-04")
    # lower season: 100 × 0.1262 = 12.62 (−2.52), 50 × 0.0631 = 3.155 → 3.16 (−0.63), fee 3.50
    assert [(ln[0], ln[4], ln[5]) for ln in lines] == [
        ("energy_vt_lower", 126_200, 1_262), ("energy_vt_lower_discount", 12_620_000, -252),
        ("energy_mt_lower", 63_100, 316), ("energy_mt_lower_discount", 3_160_000, -63),
        ("metering_point_fee", 3_500_000, 350)]
    assert totals == (1_613, 274, 1_887)  # 17 % of 16.13 = 2.7421 → 2.74
    # April's maximum is the 20 April read: the 1 April 00:00 read closed March
    lines, _, _ = invoice(conn, "200010", "2026-04")
    assert ("billing_power", None, 32_000, "kW", 9_500_000, 30_400, D17) in lines


def test_billing_power_without_a_read_waits_or_bills_the_minimum(db_url: str) -> None:
    no_minimum = copy.deepcopy(EL_10KV)
    del no_minimum["components"][2]["minimum_kw"]
    with psycopg.connect(db_url) as conn:
        seed(conn, demand=False)
        conn.execute("UPDATE tariff_versions SET document = %s::jsonb"
                     " WHERE tariff_code = 'EL-10KV'", (Json(no_minimum),))
        res = close_period(conn, "2026-03", issued_on=date(2026, 4, 2), **ALONE)
        assert res.invoices_created == 2
        assert "contract C-10" in res.skipped["200010"]
        assert "no maximum-demand read (1.6.0)" in res.skipped["200010"]
        # the read arrives: the next run invoices the business
        insert_demand(conn, DEMAND)
        res = close_period(conn, "2026-03", issued_on=date(2026, 4, 2), **ALONE)
        assert (res.invoices_created, res.skipped) == (1, {})
        assert invoice(conn, "200010", "2026-03")[2] == (163_719, 27_696, 191_415)


def test_no_read_with_a_contracted_minimum_bills_the_minimum(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        seed(conn, demand=False)
        close_period(conn, "2026-03", issued_on=date(2026, 4, 2), **ALONE)
        row = conn.execute("SELECT quantity_milli, amount_fen, description FROM invoice_lines"
                           " WHERE component = 'billing_power'").fetchone()
    assert row is not None and row[:2] == (20_000, 19_000)  # 20 kW × 9.50
    assert "nema očitanja 1.6.0" in row[2]


def test_rate_check_agrees_with_the_close(conn: psycopg.Connection) -> None:
    close_period(conn, "2026-03", issued_on=date(2026, 4, 2), **ALONE)
    texts = {}
    for customer in ("200010", "100009", "100020"):
        data = load_period(conn, customer, "2026-03")
        draft = rate(data.customer_id, data.period, data.contracts, data.consumption,
                     data.catalog, data.demand)
        texts[customer] = explain(draft, data.contracts, data.consumption, data.catalog,
                                  data.invoice, demand=data.demand)
        assert ": matches (" in texts[customer], texts[customer]
    assert "-20 % × 33.51 = -6.702 → -6.70" in texts["100009"]
    assert "Voda – blok 3 (preko 10,323 m³) (16.03.–31.03., 16/31 dana)" in texts["100020"]
    assert "3.677 m3 × 1.70 = 6.2509 → 6.25" in texts["100020"]
    data = load_period(conn, "200010", "2026-03")
    text = explain(rate(data.customer_id, data.period, data.contracts, data.consumption,
                        data.catalog, data.demand),
                   data.contracts, data.consumption, data.catalog, data.invoice,
                   demand=data.demand)
    assert "maximum demand: 1.6.0 = 42.400 kW" in text
    assert "42.400 kW × 9.50 × 31/31 = 402.80 → 402.80" in text
    assert "3.8.0 = 5000.000 kvarh" in text


def test_reissued_invoice_keeps_the_billing_power(conn: psycopg.Connection) -> None:
    # a credit note and a new invoice for the 10 kV customer: the same lines, billing power
    # from the month's 1.6.0 maximum included
    from billing.credit_notes import issue_credit_note, reissue_invoice

    close_period(conn, "2026-03", issued_on=date(2026, 4, 2), **ALONE)
    before = invoice(conn, "200010", "2026-03")
    number = conn.execute("SELECT invoice_number FROM invoices WHERE customer_id = '200010'"
                          " AND period = '2026-03'").fetchone()
    assert number is not None
    issue_credit_note(conn, number[0], issued_on=date(2026, 4, 10), reason="test",
                      operator="test")
    new = reissue_invoice(conn, "200010", "2026-03", issued_on=date(2026, 4, 10))
    lines = conn.execute(
        "SELECT component, register, quantity_milli, unit, unit_price_micro, amount_fen,"
        " vat_rate FROM invoice_lines WHERE invoice_number = %s ORDER BY line_no",
        (new,)).fetchall()
    assert lines == before[0]
    assert any(line[3] == "kW" for line in lines)


def test_close_preview_prices_billing_power_like_the_close(conn: psycopg.Connection) -> None:
    from billing.close_preview import preview_close

    drafts = {d.customer_id: d for d in preview_close(conn, "2026-03",
                                                      issued_on=date(2026, 4, 2),
                                                      line_sources=[])}
    close_period(conn, "2026-03", issued_on=date(2026, 4, 2), **ALONE)
    lines, _, totals = invoice(conn, "200010", "2026-03")
    preview = drafts["200010"]
    assert [(ln.component, ln.quantity_milli, ln.amount_fen) for ln in preview.lines] == [
        (ln[0], ln[2], ln[5]) for ln in lines]
    assert (preview.net_fen, preview.vat_fen, preview.total_fen) == totals
    assert any(ln.unit == "kW" for ln in preview.lines)
