"""The clerk's rate check and the tariff simulation through the `billing` command line."""

from __future__ import annotations

import psycopg
import pytest

from app.cli import main
from billing.closer import close_period
from tests.integration.test_close import APRIL_1, MARCH_READS, push, seed


@pytest.fixture
def db(db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("BILLING_DATABASE_URL", db_url)
    with psycopg.connect(db_url) as conn:
        seed(conn)
        conn.commit()
        push(conn, MARCH_READS)
    return db_url


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_rate_check_before_and_after_the_close(db: str, capsys: pytest.CaptureFixture[str]
                                              ) -> None:
    code, out, _ = run(capsys, "rate-check", "--customer", "100001", "--period", "2026-03")
    assert code == 0
    assert "no invoice for this period yet" in out
    # hand figures: 212.345 × 0.1578, 98.765 × 0.0789, 12.5 × 1.068376; fees 3.50, 2.50, 9.00
    assert "1.8.1 = 212.345 kWh, 1.8.2 = 98.765 kWh" in out
    assert "212.345 kWh × 0.1578 = 33.508041 → 33.51" in out
    assert "98.765 kWh × 0.0789 = 7.7925585 → 7.79" in out
    assert "12.500 m3 × 1.068376 = 13.3547 → 13.35" in out
    assert "3.50 × 31/31 = 3.50 → 3.50" in out
    assert "tariff EL-HH version of 2024-01-01, higher season" in out
    assert "VAT 17 %: 69.65 × 17 % = 11.8405 → 11.84" in out
    assert "total 81.49 KM" in out

    with psycopg.connect(db) as conn:  # without estimates: the check re-rates actual reads
        close_period(conn, "2026-03", issued_on=APRIL_1, line_sources=[])
    code, out, _ = run(capsys, "rate-check", "--customer", "100001", "--period", "2026-03")
    assert code == 0
    assert "invoice 2026-000001: matches (6 lines, total 81.49 KM)" in out

    # a prorated contract (from 11 March): 3.50 × 21/31 = 2.3709677… → 2.37
    code, out, _ = run(capsys, "rate-check", "--customer", "100002", "--period", "2026-03")
    assert code == 0
    assert "2026-03-11 – 2026-03-31, 21/31 days" in out
    assert "3.50 × 21/31 = ≈2.370968 → 2.37" in out
    assert "10.000 kWh × 0.1578 = 1.578 → 1.58" in out
    assert ": matches (" in out

    # a late correction of the stored consumption after the close shows as a difference
    with psycopg.connect(db) as conn:
        conn.execute("UPDATE daily_consumption SET quantity_milli = quantity_milli + 10000"
                     " WHERE metering_point_id = 'MP1' AND register = '1.8.1'"
                     " AND local_day = '2026-03-15'")
    code, out, _ = run(capsys, "rate-check", "--customer", "100001", "--period", "2026-03")
    assert "DIFFERS" in out
    # 222.345 × 0.1578 = 35.086041 → 35.09; +1.58 net, VAT 11.84 → 12.11, total 83.34
    assert ("invoice 212.345 → 33.51, re-rated 222.345 → 35.09 (difference 1.58)") in out
    assert "total: invoice 81.49, re-rated 83.34 (difference 1.85)" in out


def test_simulation_under_el_op(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "simulate", "--customer", "100001", "--period", "2026-03",
                       "--tariff", "EL-OP")
    assert code == 0
    assert "electricity under EL-OP instead of EL-HH" in out
    # EL-OP: 212.345 × 0.1920 = 40.77, 98.765 × 0.0960 = 9.48, fee 8.00;
    # net 83.10, VAT 14.127 → 14.13, total 97.23 against 81.49
    line = next(ln for ln in out.splitlines() if "energy_vt_higher" in ln)
    assert line.split()[-3:] == ["33.51", "40.77", "7.26"]
    line = next(ln for ln in out.splitlines() if "metering_point_fee" in ln and "electr" in ln)
    assert line.split()[-3:] == ["3.50", "8.00", "4.50"]
    assert out.splitlines()[-1].split() == ["TOTAL", "81.49", "97.23", "15.74"]
    water = next(ln for ln in out.splitlines() if "water_sewage" in ln)
    assert water.split()[-1] == "0.00"
    code, by_category, _ = run(capsys, "simulate", "--customer", "100001", "--period",
                               "2026-03", "--category", "other_consumption_0_4kv")
    assert code == 0 and by_category == out


def test_simulation_of_a_given_consumption(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "simulate", "--period", "2026-03", "--tariff", "EL-OP",
                       "--kwh-vt", "212.345", "--kwh-mt", "98.765")
    assert code == 0
    assert "Simulation without a customer" in out
    assert "212.345 kWh × 0.192 = 40.77024 → 40.77" in out
    assert "total 68.15 KM" in out  # 58.25 + 17 % (9.9025 → 9.90)
    assert "invoice" not in out
    code, out, _ = run(capsys, "simulate", "--period", "2026-07", "--tariff", "EL-JR",
                       "--kwh-vt", "100", "--kwh-mt", "50")
    assert code == 0
    assert "150.000 kWh × 0.165 = 24.75 → 24.75" in out


@pytest.mark.parametrize("argv, message", [
    (("rate-check", "--customer", "999999", "--period", "2026-03"), "unknown customer"),
    (("rate-check", "--customer", "100001", "--period", "2026-13"), "period: must be YYYY-MM"),
    (("rate-check", "--customer", "100001", "--period", "2019-03"), "no contract active"),
    (("simulate", "--customer", "100001", "--period", "2026-03", "--tariff", "EL-XX"),
     "unknown tariff 'EL-XX'"),
    (("simulate", "--customer", "100001", "--period", "2026-03", "--tariff", "W-BU"),
     "W-BU is a water tariff, not electricity"),
    (("simulate", "--customer", "200001", "--period", "2026-03", "--tariff", "EL-OP"),
     "no electricity contract"),
    (("simulate", "--period", "2026-03", "--tariff", "EL-OP", "--kwh-vt", "abc"), "--kwh-vt"),
    (("simulate", "--period", "2026-03", "--tariff", "EL-OP", "--kwh-mt", "-5"),
     "--kwh-mt: must not be negative"),
    (("simulate", "--period", "2026-03", "--tariff", "EL-OP"), "give --customer"),
    (("simulate", "--customer", "100001", "--period", "2026-03", "--category", "nope"),
     "category: no electricity tariff of category 'nope' in 2026-03; categories: households"),
])
def test_bad_input_is_refused_with_exit_code_2(
    db: str, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], message: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2, out
    assert err.startswith("error: ") and message in err, err
