"""The monthly close on a real PostgreSQL: reads → daily consumption → invoices."""

from __future__ import annotations

import copy
import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from billing import BillingError
from billing.closer import close_period
from billing.reference import make_payment_reference
from rating.money import line_amount_fen
from stream.pipeline import process_reads

CATALOG = json.loads(
    (Path(__file__).resolve().parents[2] / "app" / "demo" / "catalog.json").read_text()
)
NOW = int(datetime(2026, 7, 1, tzinfo=UTC).timestamp())
APRIL_1 = date(2026, 4, 1)


def add_tariffs(conn: psycopg.Connection, docs: list[dict[str, Any]]) -> None:
    for doc in docs:
        conn.execute(
            "INSERT INTO tariff_versions (tariff_code, valid_from, service, document)"
            " VALUES (%s, %s, %s, %s)",
            (doc["tariff_code"], doc["valid_from"], doc["service"], json.dumps(doc)),
        )


def seed(conn: psycopg.Connection) -> None:
    """Three customers (one household with three services, one household whose contract
    starts on 11 March, one business) and a metering point without a contract."""
    add_tariffs(conn, CATALOG)
    conn.execute("""
        INSERT INTO customers (customer_id, name, kind) VALUES
            ('100001', 'Amra H.', 'household'), ('100002', 'Nedim K.', 'household'),
            ('200001', 'Pekara Brčko d.o.o.', 'business');
        INSERT INTO metering_points (metering_point_id, address, area_m2) VALUES
            ('MP1', 'Bulevar mira 1', NULL), ('MP2', 'Reisa Džemaludina Čauševića 2', NULL),
            ('MP3', 'Trg mladih 3', 85.50), ('MP9', 'Vodovodna 9', NULL);
        INSERT INTO meters VALUES
            ('E1', 'electricity', 6, 1, '{1.8.1,1.8.2}'), ('W1', 'water', 5, 1, '{8.0}'),
            ('E2', 'electricity', 6, 1, '{1.8.1,1.8.2}'), ('E9', 'electricity', 6, 1, '{1.8.1}');
        INSERT INTO meter_installations VALUES
            ('E1', 'MP1', '2025-01-01T00:00Z'), ('W1', 'MP1', '2025-01-01T00:00Z'),
            ('E2', 'MP2', '2025-01-01T00:00Z'), ('E9', 'MP9', '2025-01-01T00:00Z');
        INSERT INTO contracts VALUES
            ('C1E', '100001', 'MP1', 'electricity', 'EL-HH', '2025-01-01', NULL),
            ('C1W', '100001', 'MP1', 'water', 'W-HH', '2025-01-01', NULL),
            ('C1S', '100001', 'MP1', 'waste', 'WA-HH', '2025-01-01', NULL),
            ('C2E', '100002', 'MP2', 'electricity', 'EL-HH', '2026-03-11', NULL),
            ('C3S', '200001', 'MP3', 'waste', 'WA-BU', '2025-01-01', NULL);
    """)


def read(meter: str, register: str, value: str, at: str, unit: str = "kWh") -> dict[str, str]:
    return {"meter_id": meter, "register": register, "read_at": at, "value": value,
            "unit": unit, "source": "amr"}


def push(conn: psycopg.Connection, reads: list[dict[str, str]]) -> None:
    with conn.transaction():
        res = process_reads(conn, reads, channel="test", now=NOW)
    assert [o.status for o in res.outcomes] == ["accepted"] * len(reads), res.outcomes


MARCH_READS = [
    read("E1", "1.8.1", "1000.000", "2026-03-01T00:00:00+01:00"),
    read("E1", "1.8.1", "1212.345", "2026-04-01T00:00:00+02:00"),
    read("E1", "1.8.2", "2000.000", "2026-03-01T00:00:00+01:00"),
    read("E1", "1.8.2", "2098.765", "2026-04-01T00:00:00+02:00"),
    read("W1", "8.0", "500.000", "2026-03-01T00:00:00+01:00", "m3"),
    read("W1", "8.0", "512.500", "2026-04-01T00:00:00+02:00", "m3"),
    read("E2", "1.8.1", "10.000", "2026-03-11T00:00:00+01:00"),
    read("E2", "1.8.1", "20.000", "2026-03-21T00:00:00+01:00"),
    read("E9", "1.8.1", "1.000", "2026-03-01T00:00:00+01:00"),
    read("E9", "1.8.1", "4.000", "2026-03-04T00:00:00+01:00"),
]


@pytest.fixture
def conn(db_url: str):
    with psycopg.connect(db_url) as c:
        seed(c)
        c.commit()
        yield c


def snapshot(conn: psycopg.Connection) -> list[list[tuple[Any, ...]]]:
    return [
        conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
        for table in ("invoices", "invoice_lines", "invoice_vat", "invoice_counters")
    ]


def test_close_numbers_amounts_and_idempotence(conn: psycopg.Connection) -> None:
    push(conn, MARCH_READS)
    res = close_period(conn, "2026-03", issued_on=APRIL_1)
    assert (res.invoices_created, res.invoices_existing, res.skipped) == (3, 0, {})
    assert res.unbilled_days == 3  # MP9: 1, 2 and 3 March
    rows = conn.execute(
        "SELECT invoice_number, year, seq, customer_id, issued_on, due_on, net_fen, vat_fen,"
        " total_fen, payment_reference, status FROM invoices ORDER BY seq").fetchall()
    assert [r[0] for r in rows] == ["2026-000001", "2026-000002", "2026-000003"]
    assert [r[3] for r in rows] == ["100001", "100002", "200001"]
    assert all(r[4] == APRIL_1 and r[5] == date(2026, 4, 16) for r in rows)
    assert [r[9] for r in rows] == [make_payment_reference(2026, s) for s in (1, 2, 3)]
    assert {r[10] for r in rows} == {"finalized"}
    # 100001: worked by hand in tests/unit/test_calculation.py: net 69.65, VAT 11.84
    assert rows[0][6:9] == (6965, 1184, 8149)
    # 100002: 10 kWh VT × 0.1578 = 1.58; fee 3.50 × 21/31 = 2.37; estimate (read until 21
    # March, 1 kWh/day): 10.958 kWh × 0.1578 = 1.73 (billing.estimation); VAT 0.9656 → 0.97
    assert rows[1][6:9] == (568, 97, 665)
    # 200001: 85.5 m² × 0.25 = 21.375 → 21.38; VAT 3.6346 → 3.63
    assert rows[2][6:9] == (2138, 363, 2501)
    assert (res.net_fen, res.vat_fen, res.total_fen) == (9671, 1644, 11315)  # with estimate
    lines = conn.execute(
        "SELECT line_no, component, register, quantity_milli, unit, amount_fen, vat_rate"
        " FROM invoice_lines WHERE invoice_number = '2026-000001' ORDER BY line_no").fetchall()
    assert [(r[1], r[3], r[5]) for r in lines] == [
        ("energy_vt_higher", 212_345, 3351), ("energy_mt_higher", 98_765, 779),
        ("metering_point_fee", 1000, 350), ("water_sewage", 12_500, 1335),
        ("metering_point_fee", 1000, 250), ("waste_household", 1000, 900)]
    assert [r[0] for r in lines] == [1, 2, 3, 4, 5, 6]
    vat = conn.execute("SELECT vat_rate, base_fen, vat_fen FROM invoice_vat"
                       " WHERE invoice_number = '2026-000001'").fetchall()
    assert [(float(r[0]), r[1], r[2]) for r in vat] == [(17.0, 6965, 1184)]
    assert conn.execute("SELECT last_seq FROM invoice_counters WHERE year = 2026").fetchone() \
        == (3,)
    conn.commit()

    before = snapshot(conn)
    again = close_period(conn, "2026-03", issued_on=date(2026, 4, 2))
    assert (again.invoices_created, again.invoices_existing, again.total_fen) == (0, 3, 0)
    assert snapshot(conn) == before


def test_numbers_continue_without_gaps_and_late_contract_on_rerun(
    conn: psycopg.Connection,
) -> None:
    push(conn, MARCH_READS)
    assert close_period(conn, "2026-02", issued_on=date(2026, 3, 1)).invoices_created == 2
    assert close_period(conn, "2026-03", issued_on=APRIL_1).invoices_created == 3
    conn.execute("INSERT INTO contracts VALUES ('C9E', '200001', 'MP9', 'electricity',"
                 " 'EL-OP', '2026-03-01', NULL)")
    # 200001 already has its March invoice: the new contract waits for April
    res = close_period(conn, "2026-03", issued_on=APRIL_1)
    assert (res.invoices_created, res.unbilled_days) == (0, 0)
    conn.execute("INSERT INTO customers VALUES ('300001', 'Kafana Posavina', 'business')")
    conn.execute("INSERT INTO metering_points (metering_point_id, address) VALUES ('MPX', 'X')")
    conn.execute("INSERT INTO contracts VALUES ('CXW', '300001', 'MPX', 'water', 'W-BU',"
                 " '2026-03-20', NULL)")
    res = close_period(conn, "2026-03", issued_on=APRIL_1)
    assert (res.invoices_created, res.invoices_existing) == (1, 3)
    numbers = [r[0] for r in conn.execute(
        "SELECT invoice_number FROM invoices ORDER BY year, seq")]
    assert numbers == [f"2026-{n:06d}" for n in range(1, 7)]
    # W-BU fee 2.50 × 12/31 = 0.9677… → 0.97, no consumption
    assert conn.execute("SELECT total_fen, period FROM invoices WHERE customer_id = '300001'"
                        ).fetchone() == (97 + 16, "2026-03")  # VAT 0.1649 → 0.16


def test_kwh_of_consecutive_months_add_up_to_the_register_advance(
    conn: psycopg.Connection,
) -> None:
    reads = [
        ("1000.000", "2026-02-27T10:15:00+01:00"),
        ("1101.111", "2026-03-14T03:07:09+01:00"),
        ("1200.000", "2026-03-29T01:30:00+01:00"),  # 30 min before the clock change
        ("1300.004", "2026-03-31T22:30:00+02:00"),  # 90 minutes before April
        ("1350.000", "2026-04-01T00:00:01+02:00"),
        ("1501.234", "2026-05-02T17:45:00+02:00"),
    ]
    push(conn, [read("E1", "1.8.1", v, at) for v, at in reads])
    for period, issued in (("2026-02", "2026-03-01"), ("2026-03", "2026-04-01"),
                           ("2026-04", "2026-05-01"), ("2026-05", "2026-06-01")):
        # without the estimate of 2–31 May (its invariant: tests/scenarios/test_estimate_…)
        close_period(conn, period, issued_on=date.fromisoformat(issued), line_sources=[])
    per_month = conn.execute(
        "SELECT i.period, sum(l.quantity_milli) FROM invoice_lines l JOIN invoices i"
        " USING (invoice_number) WHERE l.unit = 'kWh' AND i.customer_id = '100001'"
        " GROUP BY i.period ORDER BY 1").fetchall()
    assert [p for p, _ in per_month] == ["2026-02", "2026-03", "2026-04", "2026-05"]
    assert sum(q for _, q in per_month) == 1_501_234 - 1_000_000
    # higher season until 31 March, lower season from 1 April
    comps = {r[0] for r in conn.execute(
        "SELECT DISTINCT l.component FROM invoice_lines l JOIN invoices i USING"
        " (invoice_number) WHERE i.period = '2026-04' AND l.unit = 'kWh'")}
    assert comps == {"energy_vt_lower"}


def test_price_change_inside_the_month_splits_the_line(conn: psycopg.Connection) -> None:
    doc = copy.deepcopy(next(d for d in CATALOG if d["tariff_code"] == "EL-HH"))
    doc["valid_from"] = "2026-03-15"
    doc["components"][0]["price"] = "0.1700"  # energy_vt_higher
    add_tariffs(conn, [doc])
    push(conn, [read("E1", "1.8.1", "0.000", "2026-03-01T00:00:00+01:00"),
                read("E1", "1.8.1", "310.000", "2026-04-01T00:00:00+02:00")])
    close_period(conn, "2026-03", issued_on=APRIL_1)
    lines = conn.execute(
        "SELECT quantity_milli, unit_price_micro, amount_fen FROM invoice_lines l JOIN invoices"
        " i USING (invoice_number) WHERE i.customer_id = '100001' AND l.unit = 'kWh'"
        " ORDER BY line_no").fetchall()
    before_15 = conn.execute("SELECT sum(quantity_milli) FROM daily_consumption"
                             " WHERE local_day < '2026-03-15'").fetchone()
    assert before_15 is not None
    q1 = int(before_15[0])
    # 743 hours in March (one lost on the 29th); 1–14 March is 336 of them: ≈ 140.19 kWh
    assert abs(q1 - 310_000 * 336 // 743) <= 14
    assert lines == [(q1, 157_800, line_amount_fen(q1, 157_800)),
                     (310_000 - q1, 170_000, line_amount_fen(310_000 - q1, 170_000))]


def test_customer_with_bad_data_is_skipped_and_listed(conn: psycopg.Connection) -> None:
    conn.execute("UPDATE metering_points SET area_m2 = NULL WHERE metering_point_id = 'MP3'")
    conn.execute("INSERT INTO contracts VALUES ('C2X', '100002', 'MP1', 'waste', 'WA-HH',"
                 " '2026-03-01', NULL)")  # overlaps 100001's waste contract on MP1
    res = close_period(conn, "2026-03", issued_on=APRIL_1)
    assert res.invoices_created == 0
    assert set(res.skipped) == {"100001", "100002", "200001"}
    assert "C1S and C2X overlap on metering point MP1" in res.skipped["100001"]
    assert "area_m2 is required by tariff WA-BU" in res.skipped["200001"]
    assert conn.execute("SELECT count(*) FROM invoice_counters WHERE last_seq > 0"
                        ).fetchone() == (0,)


def test_finalized_invoices_are_immutable(conn: psycopg.Connection) -> None:
    push(conn, MARCH_READS)
    close_period(conn, "2026-03", issued_on=APRIL_1)
    conn.commit()
    for statement in (
        "UPDATE invoices SET total_fen = 0, net_fen = 0, vat_fen = 0",
        "DELETE FROM invoices",
        "UPDATE invoice_lines SET amount_fen = 0",
        "DELETE FROM invoice_lines",
        "DELETE FROM invoice_vat",
    ):
        with pytest.raises(psycopg.errors.IntegrityConstraintViolation, match="immutable"):
            conn.execute(statement)
        conn.rollback()
    # 111.12 + 2.03 for the estimate of 100002's last days of March (billing.estimation)
    assert conn.execute("SELECT sum(total_fen) FROM invoices").fetchone() == (11315,)


@pytest.mark.parametrize(
    ("period", "issued_on", "reason"),
    [
        ("2026-03", date(2026, 3, 31), "has not ended: it ends on 2026-03-31"),
        ("2026-03", date(2026, 3, 15), "has not ended"),
        ("2026-3", APRIL_1, "period: must be YYYY-MM"),
        ("2026-13", APRIL_1, "period: must be YYYY-MM"),
    ],
)
def test_refusals(conn: psycopg.Connection, period: str, issued_on: date, reason: str) -> None:
    with pytest.raises(BillingError, match=reason):
        close_period(conn, period, issued_on=issued_on)
    assert conn.execute("SELECT count(*) FROM invoices").fetchone() == (0,)


def test_move_out_and_move_in_split_the_metering_points_consumption(
    conn: psycopg.Connection,
) -> None:
    """100002 moves out of MP2 on 15 March; 300001 moves in on 16 March on another tariff."""
    conn.execute("""
        INSERT INTO customers VALUES ('300001', 'Novi stanar', 'business');
        INSERT INTO contracts VALUES
            ('C4E', '300001', 'MP2', 'electricity', 'EL-OP', '2026-03-16', NULL);
    """)
    conn.execute("DELETE FROM contracts WHERE contract_id = 'C2E'")
    conn.execute("INSERT INTO contracts VALUES ('C2E', '100002', 'MP2', 'electricity', 'EL-HH',"
                 " '2026-03-11', '2026-03-15')")
    push(conn, [read("E2", "1.8.1", "0.000", "2026-03-11T00:00:00+01:00"),
                read("E2", "1.8.1", "5.000", "2026-03-16T00:00:00+01:00"),
                read("E2", "1.8.1", "9.000", "2026-03-26T00:00:00+01:00")])
    res = close_period(conn, "2026-03", issued_on=APRIL_1)
    assert res.skipped == {}
    lines = conn.execute(
        "SELECT i.customer_id, l.component, l.quantity_milli, l.unit_price_micro, l.amount_fen,"
        " l.description FROM invoice_lines l JOIN invoices i USING (invoice_number)"
        " WHERE l.metering_point_id = 'MP2' ORDER BY i.customer_id, l.line_no").fetchall()
    # 100002: 5 kWh × 0.1578 = 0.789 → 0.79; fee 3.50 × 5/31 = 0.5645 → 0.56
    # 300001: 4 kWh × 0.1920 = 0.768 → 0.77; fee 8.00 × 16/31 = 4.1290 → 4.13
    assert lines == [
        ("100002", "energy_vt_higher", 5000, 157_800, 79, "Aktivna energija VT (viša sezona)"),
        ("100002", "metering_point_fee", 161, 3_500_000, 56,
         "Naknada za mjerno mjesto (5/31 dana)"),
        ("300001", "energy_vt_higher", 4000, 192_000, 77, "Aktivna energija VT (viša sezona)"),
        ("300001", "metering_point_fee", 516, 8_000_000, 413,
         "Naknada za mjerno mjesto (16/31 dana)"),
        # read until 26 March: 9 kWh / 15 days × 5 days 23 h = 3.575 kWh × 0.1920 → 0.69
        ("300001", "energy_vt_higher", 3575, 192_000, 69,
         "Aktivna energija VT (viša sezona) (procjena)"),
    ]


def test_concurrent_closes_take_numbers_one_after_the_other(
    conn: psycopg.Connection, db_url: str
) -> None:
    """The counter row is locked until the first close commits: the second waits and
    continues the sequence, so numbers stay gap-free and unique."""
    import threading

    push(conn, MARCH_READS)
    results: list[Any] = []
    with psycopg.connect(db_url) as other:
        with conn.transaction():
            close_period(conn, "2026-02", issued_on=date(2026, 3, 1))

            def second() -> None:
                results.append(close_period(other, "2026-03", issued_on=APRIL_1))

            worker = threading.Thread(target=second)
            worker.start()
            worker.join(timeout=1.0)
            assert worker.is_alive()  # waiting on the invoice counter
        worker.join(timeout=20)
        other.commit()
    assert results[0].invoices_created == 3
    rows = conn.execute("SELECT invoice_number, period FROM invoices ORDER BY seq").fetchall()
    assert rows == [("2026-000001", "2026-02"), ("2026-000002", "2026-02"),
                    ("2026-000003", "2026-03"), ("2026-000004", "2026-03"),
                    ("2026-000005", "2026-03")]


def test_numbers_restart_in_the_year_of_issue(conn: psycopg.Connection) -> None:
    close_period(conn, "2026-03", issued_on=APRIL_1)
    res = close_period(conn, "2026-12", issued_on=date(2027, 1, 2))
    assert res.invoices_created == 3
    rows = conn.execute("SELECT invoice_number, payment_reference FROM invoices"
                        " WHERE period = '2026-12' ORDER BY seq").fetchall()
    assert rows[0] == ("2027-000001", make_payment_reference(2027, 1))
    assert conn.execute("SELECT year, last_seq FROM invoice_counters ORDER BY 1").fetchall() \
        == [(2026, 3), (2027, 3)]


def test_a_broken_tariff_document_stops_the_close_with_its_field(
    conn: psycopg.Connection,
) -> None:
    add_tariffs(conn, [{"tariff_code": "EL-XX", "service": "electricity",
                        "valid_from": "2026-01-01", "components": []}])
    with pytest.raises(BillingError, match="tariff catalog: components: must be a non-empty"):
        close_period(conn, "2026-03", issued_on=APRIL_1)


def test_no_fee_and_no_consumption_means_no_invoice(conn: psycopg.Connection) -> None:
    add_tariffs(conn, [{"tariff_code": "EL-E", "service": "electricity",
                        "valid_from": "2024-01-01", "components": [
                            {"code": "e", "kind": "energy", "registers": ["1.8.1"],
                             "price": "0.1"}]}])
    conn.execute("UPDATE contracts SET tariff_code = 'EL-E' WHERE contract_id = 'C2E'")
    res = close_period(conn, "2026-03", issued_on=APRIL_1)
    assert res.invoices_created == 2
    assert conn.execute("SELECT count(*) FROM invoices WHERE customer_id = '100002'"
                        ).fetchone() == (0,)


def test_maximum_demand_follows_meter_installations_and_contracts(
    conn: psycopg.Connection,
) -> None:
    """1.6.0 on a 10 kV point whose meter is exchanged on 15 March (old ×20, new ×40) and
    whose customer moves out on 20 March: each contract bills the maximum of the reads of
    the meter installed at the read within its own days, × that meter's multiplier."""
    from tests.unit.test_calculation_depth import EL_10KV

    add_tariffs(conn, [EL_10KV])
    conn.execute("""
        INSERT INTO customers VALUES ('400001', 'Pilana d.o.o.', 'business'),
                                     ('400002', 'Hladnjača d.o.o.', 'business');
        INSERT INTO metering_points (metering_point_id, address) VALUES ('MPP', 'Pilanska 1');
        INSERT INTO meters VALUES ('OLD', 'electricity', 6, 20, '{1.8.1,1.6.0}'),
                                  ('NEW', 'electricity', 6, 40, '{1.8.1,1.6.0}');
        INSERT INTO meter_installations VALUES
            ('OLD', 'MPP', '2025-01-01T00:00Z', '2026-03-15T12:00:00+01:00'),
            ('NEW', 'MPP', '2026-03-15T12:00:00+01:00', NULL);
        INSERT INTO contracts VALUES
            ('CP1', '400001', 'MPP', 'electricity', 'EL-10KV', '2026-01-01', '2026-03-20'),
            ('CP2', '400002', 'MPP', 'electricity', 'EL-10KV', '2026-03-21', NULL);
    """)
    for meter, at, milli in [
        ("OLD", "2026-03-10T11:00:00+01:00", 1_000),  # 20 kW
        ("OLD", "2026-03-18T11:00:00+01:00", 5_000),  # after its removal: not this point's
        ("NEW", "2026-03-19T11:00:00+01:00", 750),  # 30 kW: 400001's maximum
        ("NEW", "2026-03-25T11:00:00+01:00", 625),  # 25 kW: 400002's maximum
        ("NEW", "2026-04-02T11:00:00+02:00", 2_000),  # April's
    ]:
        conn.execute("INSERT INTO readings VALUES (%s, '1.6.0', %s, %s, 'kW', 'amr', %s)",
                     (meter, at, milli, at))
    res = close_period(conn, "2026-03", issued_on=APRIL_1, line_sources=[], after_write=[])
    assert "400001" not in res.skipped and "400002" not in res.skipped
    power = conn.execute(
        "SELECT i.customer_id, l.quantity_milli, l.amount_fen FROM invoice_lines l"
        " JOIN invoices i USING (invoice_number) WHERE l.component = 'billing_power'"
        " ORDER BY i.customer_id").fetchall()
    # 30 kW × 9.50 × 20/31 = 183.870… → 183.87; 25 kW × 9.50 × 11/31 = 84.274… → 84.27
    assert power == [("400001", 30_000, 18_387), ("400002", 25_000, 8_427)]
