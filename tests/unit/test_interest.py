"""Late-payment interest, computed by hand: 0.03 % per day of the open principal."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from billing import BillingError
from billing.interest import (
    Credit,
    Debt,
    RatePeriod,
    interest_by_invoice,
    overdue,
    total_interest_fen,
)

D = date


def test_thirty_days_on_100_km_is_90_feninga() -> None:
    # 10000 fen × 0.0003 × 30 days (16 Mar … 14 Apr) = 90
    [row] = interest_by_invoice([Debt("A", D(2026, 3, 15), 10000)], [], D(2026, 4, 14))
    assert (row.days, row.interest_fen, row.open_fen) == (30, 90, 10000)


def test_nothing_until_the_day_after_due() -> None:
    debts = [Debt("A", D(2026, 3, 15), 10000)]
    assert total_interest_fen(debts, [], D(2026, 3, 15)) == 0
    assert total_interest_fen(debts, [], D(2026, 3, 16)) == 3  # 10000 × 0.0003 = 3


def test_partial_payment_reduces_the_principal_from_the_next_day() -> None:
    # 16–25 Mar: 10 days on 100 KM = 30; the payment of 25 Mar counts from 26 Mar;
    # 26 Mar – 14 Apr: 20 days on 60 KM = 36 → 66
    debts = [Debt("A", D(2026, 3, 15), 10000)]
    credits = [Credit(D(2026, 3, 25), 4000)]
    [row] = interest_by_invoice(debts, credits, D(2026, 4, 14))
    assert (row.interest_fen, row.open_fen, row.days) == (66, 6000, 30)


def test_paid_late_in_full_days_are_paid_on_minus_due_on() -> None:
    debts = [Debt("A", D(2026, 3, 15), 8149)]
    credits = [Credit(D(2026, 4, 4), 8149)]  # 20 days late
    [row] = interest_by_invoice(debts, credits, D(2026, 12, 31))
    # 8149 × 0.0003 × 20 = 48.894 → 49
    assert (row.days, row.interest_fen, row.open_fen) == (20, 49, 0)


def test_fifo_payment_covers_the_oldest_invoice_first() -> None:
    debts = [Debt("A", D(2026, 2, 15), 5000), Debt("B", D(2026, 3, 15), 5000)]
    credits = [Credit(D(2026, 3, 1), 5000)]  # pays A 14 days late
    a, b = interest_by_invoice(debts, credits, D(2026, 3, 25))
    assert (a.days, a.interest_fen) == (14, 21)  # 5000 × 0.0003 × 14 = 21
    assert (b.days, b.interest_fen) == (10, 15)  # 5000 × 0.0003 × 10 = 15
    assert overdue(debts, credits, D(2026, 3, 25)) == (5000, 10)


def test_prepayment_covers_a_later_invoice() -> None:
    debts = [Debt("A", D(2026, 3, 15), 5000)]
    assert total_interest_fen(debts, [Credit(D(2026, 1, 2), 9000)], D(2026, 6, 1)) == 0
    assert overdue(debts, [Credit(D(2026, 1, 2), 9000)], D(2026, 6, 1)) == (0, 0)


def test_rate_change_applies_from_its_date_and_rounding_is_once_per_invoice() -> None:
    rates = (RatePeriod(D(2000, 1, 1), Decimal("0.03")), RatePeriod(D(2026, 4, 1),
                                                                   Decimal("0.05")))
    # 16–31 Mar: 16 days × 1 × 0.0003 × 1001 = 4.8048; 1–10 Apr: 10 × 0.0005 × 1001 = 5.005
    # 9.8098 → 10 (rounded once, not 5 + 5)
    [row] = interest_by_invoice([Debt("A", D(2026, 3, 15), 1001)], [], D(2026, 4, 10), rates)
    assert row.interest_fen == 10
    with pytest.raises(BillingError, match=r"rates\[1\].valid_from"):
        interest_by_invoice([], [], D(2026, 1, 1), tuple(reversed(rates)))


def test_half_up_per_invoice() -> None:
    # 5000 × 0.0003 × 1 = 1.5 → 2 ; two such invoices give 4, not round(3.0) = 3
    debts = [Debt("A", D(2026, 3, 15), 5000), Debt("B", D(2026, 3, 15), 5000)]
    assert [r.interest_fen for r in interest_by_invoice(debts, [], D(2026, 3, 16))] == [2, 2]


def test_a_payment_by_reference_pays_its_invoice_and_the_older_one_bears_interest() -> None:
    # issue #5: B paid on 1 Mar by its reference; A (due 15 Feb) stays open: 5000 × 0.0003
    # × 38 days (16 Feb … 25 Mar) = 57; without the reference A is paid 14 days late (21)
    debts = [Debt("A", D(2026, 2, 15), 5000), Debt("B", D(2026, 3, 15), 5000)]
    a, b = interest_by_invoice(debts, [Credit(D(2026, 3, 1), 5000, "B")], D(2026, 3, 25))
    assert (a.interest_fen, a.open_fen, b.interest_fen, b.open_fen) == (57, 5000, 0, 0)
    assert overdue(debts, [Credit(D(2026, 3, 1), 5000, "B")], D(2026, 3, 25)) == (5000, 38)
    assert Credit(D(2026, 3, 1), 5000) == Credit(D(2026, 3, 1), 5000, None)
