"""Estimation rules (pure): which basis, the daily rate, the uncovered time and its spread."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from billing.calculation import ContractInput
from billing.estimation import (
    DEFAULT_PROFILE,
    ESTIMATE_MARK,
    Estimate,
    MonthUsage,
    Rate,
    Uncovered,
    daily_rate,
    estimate,
    estimate_invoice_lines,
    estimate_quantity,
    shift_period,
    spread,
    uncovered_seconds,
)
from rating.calendar import local_midnight_epoch
from rating.catalog import Catalog
from tests.integration.test_close import CATALOG


def full(period: str, quantity: int) -> tuple[str, MonthUsage]:
    days = {"02": 28, "04": 30, "06": 30, "09": 30, "11": 30}.get(period[5:], 31)
    return period, MonthUsage(quantity, days)


def test_shift_period_crosses_years() -> None:
    assert shift_period("2026-03", -3) == "2025-12"
    assert shift_period("2026-03", -15) == "2024-12"
    assert shift_period("2025-12", 1) == "2026-01"


def test_last_year_scaled_by_the_trend() -> None:
    # March 2025: 310 kWh (10/day); Dec–Feb this year 20 % above Dec–Feb a year before
    history = dict([full("2025-03", 310_000),
                    full("2025-12", 120_000), full("2026-01", 120_000), full("2026-02", 120_000),
                    full("2024-12", 100_000), full("2025-01", 100_000), full("2025-02", 100_000)])
    rate = daily_rate("2026-03", history, None)
    assert rate == Rate(Fraction(12_000), "last_year_trend")


def test_incomplete_year_falls_back_to_recent_average() -> None:
    history = dict([full("2025-03", 310_000), full("2025-12", 120_000),
                    full("2026-01", 120_000), ("2026-02", MonthUsage(50_000, 10))])
    rate = daily_rate("2026-03", history, 999)
    # (120 + 120 + 50) kWh over 31 + 31 + 10 days; the partial February is not a full month
    assert rate == Rate(Fraction(290_000, 72), "recent_average")


def test_too_few_days_use_the_category_profile_else_nothing() -> None:
    history = {"2026-03": MonthUsage(30_000, 6)}
    assert daily_rate("2026-03", history, 310_000) == Rate(Fraction(10_000), "profile")
    assert daily_rate("2026-03", history, None) is None
    assert daily_rate("2026-03", {"2026-03": MonthUsage(35_000, 7)}, None) == Rate(
        Fraction(5_000), "recent_average")


def test_zero_base_year_does_not_divide_by_zero() -> None:
    history = dict([full("2025-03", 310_000), full("2025-12", 0), full("2026-01", 0),
                    full("2026-02", 0), full("2024-12", 0), full("2025-01", 0),
                    full("2025-02", 0)])
    assert daily_rate("2026-03", history, None) == Rate(Fraction(0), "recent_average")


def test_uncovered_seconds_follow_local_days_and_dst() -> None:
    noon = int(datetime(2026, 3, 28, 11, 0, tzinfo=UTC).timestamp())  # 12:00 local
    end = local_midnight_epoch(date(2026, 4, 1))
    parts = uncovered_seconds(noon, end)
    assert parts == [(date(2026, 3, 28), 43_200), (date(2026, 3, 29), 82_800),
                     (date(2026, 3, 30), 86_400), (date(2026, 3, 31), 86_400)]
    assert uncovered_seconds(end, end) == []


def test_quantity_is_rate_times_time_rounded_half_up() -> None:
    assert estimate_quantity(Rate(Fraction(5_000), "x"), 86_400 * 10 + 82_800) == 54_792
    assert estimate_quantity(Rate(Fraction(1), "x"), 43_200) == 1  # 0.5 → 1


@given(st.integers(min_value=0, max_value=10**9),
       st.lists(st.integers(min_value=1, max_value=86_400), min_size=1, max_size=40))
def test_spread_sums_exactly_and_is_proportional(quantity: int, seconds: list[int]) -> None:
    days = [(date(2026, 1, 1 + i % 28), s) for i, s in enumerate(seconds)]
    parts = spread(quantity, days)
    assert sum(q for _, q in parts) == quantity
    total = sum(seconds)
    for (_, q), s in zip(parts, seconds, strict=True):
        assert abs(q - quantity * s / total) <= 1


def place(start: int, stop: int, register: str = "1.8.1") -> Uncovered:
    contract = ContractInput("C1E", "MP1", "electricity", "EL-HH", date(2025, 1, 1), None,
                             Decimal("0"), None)
    return Uncovered("100001", contract, "E1", register, start, stop, "households")


def test_estimate_lines_are_priced_per_day_with_the_season() -> None:
    catalog = Catalog.from_documents(CATALOG)
    start = local_midnight_epoch(date(2026, 3, 30))
    stop = local_midnight_epoch(date(2026, 4, 1))
    found = estimate(place(start, stop), "2026-03", {}, DEFAULT_PROFILE)
    assert found is not None and found.basis == "profile"
    assert found.quantity_milli == 16_129  # 250 kWh / 31 days × 2 days
    lines = estimate_invoice_lines("100001", "2026-03", [found], catalog)
    assert [(ln.component, ln.quantity_milli, ln.amount_fen) for ln in lines] == [
        ("energy_vt_higher", 16_129, 255)]  # × 0.1578
    assert lines[0].description.endswith(ESTIMATE_MARK)
    # across the season change (1 April): two lines at two prices, summing exactly
    april = place(local_midnight_epoch(date(2026, 3, 31)), local_midnight_epoch(
        date(2026, 4, 2)))
    lines = estimate_invoice_lines("100001", "2026-04",
                                   [Estimate(april, 20_000, "profile")], catalog)
    # the calculation only prices days of its own period: 1 April (lower season)
    assert [(ln.component, ln.quantity_milli) for ln in lines] == [
        ("energy_vt_lower", 10_000)]


def test_unknown_category_without_history_is_not_estimated() -> None:
    p = place(0, 86_400, register="9.9.9")
    assert estimate(p, "2026-03", {}, DEFAULT_PROFILE) is None
