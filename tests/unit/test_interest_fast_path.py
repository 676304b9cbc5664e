"""Issue #5's speed-up of the interest: every result identical to the algorithm it replaced.

The oracle is the code before the speed-up, kept verbatim in `bench.interest_speed`
(`reference_*`): the pooled closed form, and the targeted path that settled every debt on
every credit day. Random customers: totals zero or negative too, duplicate invoice numbers,
payments naming an existing, a foreign or a duplicated number, reversals and refunds,
overpayments, several credits a day, credits after `as_of`, several rate periods (also one
starting after a debt fell due: the error must be the same).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal, localcontext

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.interest_speed import (
    reference_cover,
    reference_interest_by_invoice,
    reference_overdue,
    reference_targeted_interest,
)
from billing import BillingError
from billing.allocation import Credit, Debt, cover, open_by_day
from billing.interest import InvoiceInterest, RatePeriod, interest_by_invoice, overdue

START = date(2026, 1, 1)
days = st.integers(0, 150).map(lambda n: START + timedelta(days=n))
numbers = st.sampled_from(["A", "B", "C", "D", "AB"])
debts_st = st.lists(st.builds(Debt, numbers, days, st.one_of(
    st.integers(-500, 30_000), st.sampled_from([0, 1, 5000]))), max_size=7)
credits_st = st.lists(st.builds(Credit, days, st.one_of(
    st.integers(-9000, 40_000), st.sampled_from([0, 5000, -5000])),
    st.one_of(st.none(), numbers, st.just("X"))), max_size=9)
percent = st.sampled_from(["0.03", "0.05", "0", "0.0275", "0.1", "0.00000001", "0.999",
                           "0.030", "0.123456789"]).map(Decimal)


@st.composite
def rates_st(draw: st.DrawFn) -> tuple[RatePeriod, ...]:
    starts = sorted(draw(st.sets(st.integers(-5, 160), min_size=1, max_size=4)))
    if draw(st.booleans()):  # usually valid before every debt
        starts[0] = -3000
    return tuple(RatePeriod(START + timedelta(days=s), draw(percent)) for s in starts)


def outcome(fn: Callable[..., list[InvoiceInterest]], *args: object
            ) -> list[InvoiceInterest] | str:
    """The result, or the error's type and message (which must be the same too)."""
    try:
        return fn(*args)
    except (BillingError, ArithmeticError) as e:
        return f"{type(e).__name__}: {e}"


@settings(max_examples=800, deadline=None)
@given(debts=debts_st, credits=credits_st, as_of=days, rates=rates_st())
def test_interest_overdue_and_cover_equal_the_algorithm_before(
    debts: list[Debt], credits: list[Credit], as_of: date, rates: tuple[RatePeriod, ...],
) -> None:
    assert outcome(interest_by_invoice, debts, credits, as_of, rates) == outcome(
        reference_interest_by_invoice, debts, credits, as_of, rates)
    assert overdue(debts, credits, as_of) == reference_overdue(debts, credits, as_of)
    assert cover(debts, credits, as_of) == reference_cover(debts, credits, as_of)
    assert cover(debts, credits) == reference_cover(debts, credits)


@settings(max_examples=300, deadline=None)
@given(debts=debts_st, credits=credits_st, as_of=days)
def test_the_open_runs_are_the_coverage_of_the_day_before(
    debts: list[Debt], credits: list[Credit], as_of: date,
) -> None:
    runs = open_by_day(debts, credits, as_of)
    moments = sorted({c.on for c in credits if c.on <= as_of} | {as_of})
    for moment in [START - timedelta(days=1), *moments]:
        day = moment.toordinal() + 1
        expected = [max(d.total_fen, 0) - c for d, c in zip(
            debts, reference_cover(debts, credits, moment).covered_fen, strict=True)]
        assert [[v for since, v in run if since <= day][-1] for run in runs] == expected
    for run in runs:  # ascending, a new entry only when the amount changes
        assert all(a[0] < b[0] and a[1] != b[1] for a, b in zip(run, run[1:], strict=False))


@settings(max_examples=200, deadline=None)
@given(debts=debts_st, credits=credits_st, as_of=days, rates=rates_st(),
       precision=st.integers(3, 9))
def test_a_context_that_rounds_gives_the_same_rounded_sum_as_before(
    debts: list[Debt], credits: list[Credit], as_of: date, rates: tuple[RatePeriod, ...],
    precision: int,
) -> None:
    # the integer sum would be exact where the Decimal steps round: the Decimal path is kept
    with localcontext() as ctx:
        ctx.prec = precision
        assert outcome(interest_by_invoice, debts, credits, as_of, rates) == outcome(
            reference_interest_by_invoice, debts, credits, as_of, rates)


def test_a_rate_finer_than_the_precision_and_huge_amounts_round_as_before() -> None:
    rates = (RatePeriod(date(2000, 1, 1), Decimal("0.0123456789012345678901234567")),
             RatePeriod(date(2026, 2, 1), Decimal("0.03")))
    debts = [Debt("A", date(2026, 1, 15), 10**22 + 7), Debt("B", date(2026, 2, 15), 999_999)]
    credits = [Credit(date(2026, 2, 20), 10**21, "B"), Credit(date(2026, 3, 3), -5, "A")]
    got = interest_by_invoice(debts, credits, date(2026, 6, 30), rates)
    assert got == reference_targeted_interest(debts, credits, date(2026, 6, 30), rates)
    assert got[0].interest_fen > 10**18  # not a silent zero


def test_a_rate_missing_on_an_open_day_names_the_first_such_day() -> None:
    debts = [Debt("A", date(2026, 1, 15), 0), Debt("B", date(2026, 2, 15), 5000)]
    for first in (date(2026, 2, 17), date(2026, 3, 1)):
        rates = (RatePeriod(first, Decimal("0.03")),)
        with pytest.raises(BillingError, match="no interest rate is valid on 2026-02-16"):
            interest_by_invoice(debts, [Credit(date(2026, 1, 1), 100, "A")],
                                date(2026, 4, 1), rates)
    # paid by its reference before it fell due: no open day, no missing rate
    paid = [Credit(date(2026, 2, 1), 5000, "B")]
    assert [r.interest_fen for r in interest_by_invoice(debts, paid, date(2026, 4, 1),
                                                         rates)] == [0, 0]


def test_many_invoices_each_paid_late_by_its_reference() -> None:
    # 24 invoices of 100 KM each paid 10 days late by reference: 10 days × 3 fen = 30 each
    debts = [Debt(f"R{m:02d}", date(2024, 1, 16) + timedelta(days=30 * m), 10_000)
             for m in range(24)]
    credits = [Credit(d.due_on + timedelta(days=10), 10_000, d.number) for d in debts]
    rows = interest_by_invoice(debts, credits, date(2026, 6, 30))
    assert [(r.days, r.interest_fen, r.open_fen) for r in rows] == [(10, 30, 0)] * 24
    assert rows == reference_interest_by_invoice(debts, credits, date(2026, 6, 30),
                                                 (RatePeriod(date(2000, 1, 1),
                                                             Decimal("0.03")),))
