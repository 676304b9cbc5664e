"""The allocation rule (issue #5): a payment naming an invoice pays it, the rest is FIFO.

Without a targeted credit every read side must give exactly what the pooled FIFO gave
before; the old formulas are copied here as the reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from billing.accounts import allocate_fifo
from billing.aging import BUCKETS, age_items, bucket_of
from billing.allocation import Coverage, Credit, Debt, cover, open_by_day
from billing.interest import (
    DEFAULT_RATES,
    InvoiceInterest,
    RatePeriod,
    interest_by_invoice,
    overdue,
)

D = date
JAN, FEB = Debt("JAN", D(2026, 2, 15), 5000), Debt("FEB", D(2026, 3, 15), 3000)


# ---- the rule by hand -------------------------------------------------------------------


def test_a_payment_naming_an_invoice_pays_that_invoice() -> None:
    got = cover([JAN, FEB], [Credit(D(2026, 3, 1), 3000, "FEB")])
    assert got == Coverage((0, 3000), 0)


def test_without_a_reference_the_oldest_is_paid_first() -> None:
    assert cover([JAN, FEB], [Credit(D(2026, 3, 1), 3000)]) == Coverage((3000, 0), 0)


def test_the_excess_of_a_targeted_payment_covers_the_oldest_other_then_is_surplus() -> None:
    assert cover([JAN, FEB], [Credit(D(2026, 3, 1), 4000, "FEB")]) == Coverage((1000, 3000), 0)
    assert cover([JAN, FEB], [Credit(D(2026, 3, 1), 9500, "FEB")]) == Coverage((5000, 3000), 1500)


def test_a_reversal_carries_the_target_and_nets_the_payment_out_from_its_date() -> None:
    credits = [Credit(D(2026, 3, 1), 4000, "FEB"), Credit(D(2026, 3, 10), -4000, "FEB")]
    assert cover([JAN, FEB], credits, D(2026, 3, 9)) == Coverage((1000, 3000), 0)
    assert cover([JAN, FEB], credits, D(2026, 3, 10)) == Coverage((0, 0), 0)


def test_an_unknown_or_credited_invoice_makes_pool_money() -> None:
    # "OLD" is not among the debts (credited, someone else's): the payment is pooled
    assert cover([JAN, FEB], [Credit(D(2026, 3, 1), 3000, "OLD")]) == Coverage((3000, 0), 0)


def test_a_negative_pool_covers_nothing_but_takes_nothing_from_a_target() -> None:
    credits = [Credit(D(2026, 3, 1), 3000, "FEB"), Credit(D(2026, 3, 2), -2000)]  # a refund
    assert cover([JAN, FEB], credits) == Coverage((0, 3000), 0)
    # an untargeted payment first fills the hole of the pool
    assert cover([JAN, FEB], [*credits, Credit(D(2026, 3, 3), 2500)]) == Coverage((500, 3000), 0)


def test_targeted_credits_in_any_order_give_the_same_coverage() -> None:
    credits = [Credit(D(2026, 3, 1), 2000, "FEB"), Credit(D(2026, 3, 2), 2000, "FEB"),
               Credit(D(2026, 3, 3), 1000)]
    assert cover([JAN, FEB], credits) == cover([JAN, FEB], credits[::-1]) == Coverage(
        (2000, 3000), 0)


def test_credits_after_the_moment_are_ignored() -> None:
    credits = [Credit(D(2026, 3, 1), 3000, "FEB")]
    assert cover([JAN, FEB], credits, D(2026, 2, 28)) == Coverage((0, 0), 0)


def test_the_open_amounts_change_the_day_after_each_credit() -> None:
    credits = [Credit(D(2026, 3, 1), 3000, "FEB"), Credit(D(2026, 3, 1), 100),
               Credit(D(2026, 3, 5), 500), Credit(D(2026, 4, 1), 9)]
    day = date.toordinal
    assert open_by_day([JAN, FEB], credits, D(2026, 3, 31)) == [
        [(1, 5000), (day(D(2026, 3, 2)), 4900), (day(D(2026, 3, 6)), 4400)],
        [(1, 3000), (day(D(2026, 3, 2)), 0)]]


def test_interest_accrues_on_the_invoice_the_targeted_payment_did_not_pay() -> None:
    credits = [Credit(D(2026, 3, 1), 3000, "FEB")]  # FEB paid before it is due
    jan, feb = interest_by_invoice([JAN, FEB], credits, D(2026, 3, 31))
    # JAN: 16 Feb … 31 Mar = 44 days × 5000 × 0.0003 = 66
    assert (jan.days, jan.interest_fen, jan.open_fen) == (44, 66, 5000)
    assert (feb.days, feb.interest_fen, feb.open_fen) == (0, 0, 0)
    assert overdue([JAN, FEB], credits, D(2026, 3, 31)) == (5000, 44)


def test_interest_after_a_reversal_of_a_targeted_payment() -> None:
    credits = [Credit(D(2026, 3, 1), 3000, "FEB"), Credit(D(2026, 3, 20), -3000, "FEB")]
    _, feb = interest_by_invoice([JAN, FEB], credits, D(2026, 3, 31))
    # FEB open again from 21 Mar: 11 days × 3000 × 0.0003 = 9.9 → 10
    assert (feb.days, feb.interest_fen, feb.open_fen) == (11, 10, 3000)
    assert overdue([JAN, FEB], credits, D(2026, 3, 31)) == (8000, 44)


def test_excess_of_a_targeted_payment_stops_interest_on_the_oldest_from_the_next_day() -> None:
    credits = [Credit(D(2026, 3, 1), 8000, "FEB")]  # pays FEB and, with the excess, JAN
    jan, feb = interest_by_invoice([JAN, FEB], credits, D(2026, 3, 31))
    # JAN 16 Feb … 1 Mar = 14 days × 5000 × 0.0003 = 21
    assert (jan.days, jan.interest_fen, jan.open_fen, feb.interest_fen) == (14, 21, 0, 0)
    assert overdue([JAN, FEB], credits, D(2026, 3, 31)) == (0, 0)


def test_aging_of_a_targeted_payment() -> None:
    buckets, surplus = age_items([JAN, FEB], [Credit(D(2026, 3, 1), 3000, "FEB")],
                                 D(2026, 3, 31))
    assert (buckets["31-60"], sum(buckets.values()), surplus) == (5000, 5000, 0)


# ---- without a target: identical to the pooled FIFO of before ------------------------------


def old_allocate(totals: Sequence[int], paid_fen: int) -> list[int]:
    left = max(paid_fen, 0)
    covered = []
    for total in totals:
        part = min(max(total, 0), left)
        covered.append(part)
        left -= part
    return covered


def old_age(items: Sequence[Debt], credits: Sequence[Credit], as_of: date
            ) -> tuple[dict[str, int], int]:
    left = sum(c.amount_fen for c in credits if c.on <= as_of)
    buckets = dict.fromkeys(BUCKETS, 0)
    for item in items:
        amount = max(item.total_fen, 0)
        covered = min(amount, max(left, 0))
        left -= covered
        if amount > covered:
            buckets[bucket_of((as_of - item.due_on).days)] += amount - covered
    return buckets, max(left, 0)


def old_overdue(debts: Sequence[Debt], credits: Sequence[Credit], as_of: date
                ) -> tuple[int, int]:
    paid = sum(c.amount_fen for c in credits if c.on <= as_of)
    before, amount, oldest = 0, 0, None
    for debt in debts:
        total = max(debt.total_fen, 0)
        open_fen = total - min(max(paid - before, 0), total)
        before += total
        if open_fen > 0 and debt.due_on < as_of:
            amount += open_fen
            oldest = debt.due_on if oldest is None else min(oldest, debt.due_on)
    return amount, (as_of - oldest).days if oldest else 0


def old_interest(debts: Sequence[Debt], credits: Sequence[Credit], as_of: date,
                 rates: Sequence[RatePeriod]) -> list[InvoiceInterest]:
    """The closed form before issue #5, day by day (slow and obvious)."""
    out = []
    before = 0
    for debt in debts:
        total = max(debt.total_fen, 0)
        exact, days = Decimal(0), 0
        day = debt.due_on + timedelta(days=1)
        while day <= as_of:
            paid = sum(c.amount_fen for c in credits if c.on < day)
            open_fen = total - min(max(paid - before, 0), total)
            if open_fen > 0:
                rate = max((r for r in rates if r.valid_from <= day), key=lambda r: r.valid_from)
                exact += Decimal(open_fen) * rate.daily_percent / 100
                days += 1
            day += timedelta(days=1)
        paid_end = sum(c.amount_fen for c in credits if c.on <= as_of)
        out.append(InvoiceInterest(debt.number, debt.due_on, total,
                                   total - min(max(paid_end - before, 0), total), days,
                                   int(exact.quantize(Decimal(1), ROUND_HALF_UP))))
        before += total
    return out


START = D(2026, 1, 1)
days = st.integers(0, 120).map(lambda n: START + timedelta(days=n))
debts_st = st.lists(st.builds(Debt, st.text("AB", min_size=1, max_size=3), days,
                              st.integers(-500, 20_000)), max_size=5)
pooled_st = st.lists(st.builds(Credit, days, st.integers(-8000, 20_000)), max_size=6)
RATES = (*DEFAULT_RATES, RatePeriod(D(2026, 3, 1), Decimal("0.05")))


@settings(max_examples=300, deadline=None)
@given(debts=debts_st, credits=pooled_st, as_of=days)
def test_without_a_target_every_read_side_is_the_pooled_fifo_of_before(
    debts: list[Debt], credits: list[Credit], as_of: date,
) -> None:
    paid = sum(c.amount_fen for c in credits if c.on <= as_of)
    assert list(cover(debts, credits, as_of).covered_fen) == old_allocate(
        [d.total_fen for d in debts], paid)
    assert allocate_fifo([d.total_fen for d in debts], paid) == old_allocate(
        [d.total_fen for d in debts], paid)
    assert age_items(debts, credits, as_of) == old_age(debts, credits, as_of)
    assert overdue(debts, credits, as_of) == old_overdue(debts, credits, as_of)
    assert interest_by_invoice(debts, credits, as_of, RATES) == old_interest(
        debts, credits, as_of, RATES)


targeted_st = st.lists(st.builds(Credit, days, st.integers(-8000, 20_000),
                                 st.one_of(st.none(), st.sampled_from(["A", "B", "AB", "X"]))),
                       max_size=6)


@settings(max_examples=300, deadline=None)
@given(debts=debts_st, credits=targeted_st, as_of=days)
def test_targeted_money_is_conserved_and_the_interest_follows_the_daily_coverage(
    debts: list[Debt], credits: list[Credit], as_of: date,
) -> None:
    got = cover(debts, credits, as_of)
    totals = [max(d.total_fen, 0) for d in debts]
    assert all(0 <= c <= t for c, t in zip(got.covered_fen, totals, strict=True))
    assert got.surplus_fen >= 0
    paid = sum(c.amount_fen for c in credits if c.on <= as_of)
    if got.surplus_fen:  # a surplus only once every debt is covered
        assert got.covered_fen == tuple(totals)
        assert sum(got.covered_fen) + got.surplus_fen == paid
    # the interest path equals a day-by-day recomputation of the coverage
    expected = []
    for k, debt in enumerate(debts):
        exact, n = Decimal(0), 0
        day = debt.due_on + timedelta(days=1)
        while day <= as_of:
            open_fen = totals[k] - cover(debts, credits, day - timedelta(days=1)).covered_fen[k]
            if open_fen > 0:
                rate = max((r for r in RATES if r.valid_from <= day), key=lambda r: r.valid_from)
                exact += Decimal(open_fen) * rate.daily_percent / 100
                n += 1
            day += timedelta(days=1)
        expected.append(InvoiceInterest(debt.number, debt.due_on, totals[k],
                                        totals[k] - got.covered_fen[k], n,
                                        int(exact.quantize(Decimal(1), ROUND_HALF_UP))))
    assert interest_by_invoice(debts, credits, as_of, RATES) == expected
