"""Late-payment interest (zatezna kamata), pure.

Brčko District: 0.03 % per day, simple (no interest on interest), on the overdue principal
of each invoice. The principal still open on a day follows `billing.allocation`: a payment
whose reference names an invoice pays that invoice (its excess and all other credits are
pooled), the pool covers the oldest open invoice first, prepayments included. Without a
targeted credit this is the closed form of the pooled FIFO: invoice *i* is open by
``total_i − clamp(P − C_{i−1}, 0, total_i)`` where ``P`` is the sum of credits so far and
``C_{i−1}`` the totals of the invoices before. With one, the coverage is recomputed on each
day a credit changes it (`allocation.coverage_steps`): O((debts + credits) × credit days)
at worst.

Day count: day *d* accrues interest when ``due_on < d ≤ as_of`` on the principal left open
by the credits dated before *d*; a payment on day *p* therefore still bears that day's
interest (days = paid_on − due_on, the usual "from maturity to payment" count). The rate
of a day is the latest `RatePeriod` valid from that day or earlier (rates are configurable
with effective dates). Each invoice's interest is summed exactly (Decimal) and rounded
half up to the fening once.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

from billing import BillingError
from billing.allocation import Credit, Debt, cover, coverage_steps, targets

__all__ = ["Credit", "Debt", "InvoiceInterest", "RatePeriod", "check_rates", "interest_by_invoice",
           "overdue", "total_interest_fen"]


@dataclass(frozen=True, slots=True)
class RatePeriod:
    valid_from: date
    daily_percent: Decimal  # 0.03 = 0.03 % of the principal per day


@dataclass(frozen=True, slots=True)
class InvoiceInterest:
    number: str
    due_on: date
    total_fen: int
    open_fen: int  # principal open at the end of as_of
    days: int  # days that bore interest
    interest_fen: int


DEFAULT_RATES: tuple[RatePeriod, ...] = (RatePeriod(date(2000, 1, 1), Decimal("0.03")),)


def check_rates(rates: Sequence[RatePeriod]) -> None:
    if not rates:
        raise BillingError("rates: at least one rate period is required")
    for i, r in enumerate(rates):
        if not isinstance(r.daily_percent, Decimal) or not Decimal(0) <= r.daily_percent < 1:
            raise BillingError(f"rates[{i}].daily_percent: a Decimal in [0, 1) is required")
        if i and r.valid_from <= rates[i - 1].valid_from:
            raise BillingError(f"rates[{i}].valid_from: must be after the previous period")


def _rate_on(rates: Sequence[RatePeriod], day: date) -> Decimal:
    starts = [r.valid_from for r in rates]
    i = bisect_right(starts, day) - 1
    if i < 0:
        raise BillingError(f"rates: no interest rate is valid on {day.isoformat()}")
    return rates[i].daily_percent


def interest_by_invoice(
    debts: Sequence[Debt], credits: Sequence[Credit], as_of: date,
    rates: Sequence[RatePeriod] = DEFAULT_RATES,
) -> list[InvoiceInterest]:
    """Interest accrued up to and including `as_of` per invoice, in the order given (the
    FIFO order: oldest first). Credits after `as_of` are ignored."""
    check_rates(rates)
    if targets(debts, credits):
        return _targeted_interest(debts, credits, as_of, rates)
    dated = sorted((c.on, c.amount_fen) for c in credits if c.on <= as_of)
    days_of_credit = [d for d, _ in dated]
    cumulative: list[int] = []
    running = 0
    for _, amount in dated:
        running += amount
        cumulative.append(running)

    def paid_before(day: date) -> int:
        i = bisect_right(days_of_credit, day - timedelta(days=1))
        return cumulative[i - 1] if i else 0

    out: list[InvoiceInterest] = []
    before = 0  # totals of the invoices before this one (C_{i−1})
    for debt in debts:
        total = max(debt.total_fen, 0)
        start, end = debt.due_on + timedelta(days=1), as_of + timedelta(days=1)
        cuts = {start, end} | {d + timedelta(days=1) for d in days_of_credit}
        cuts |= {r.valid_from for r in rates}
        points = sorted(c for c in cuts if start <= c <= end)
        exact, days = Decimal(0), 0
        for a, b in zip(points, points[1:], strict=False):
            open_fen = total - min(max(paid_before(a) - before, 0), total)
            if open_fen > 0:
                exact += Decimal(open_fen) * _rate_on(rates, a) / 100 * (b - a).days
                days += (b - a).days
        open_end = total - min(max(running - before, 0), total)
        fen = int(exact.quantize(Decimal(1), ROUND_HALF_UP))
        out.append(InvoiceInterest(debt.number, debt.due_on, total, open_end, days, fen))
        before += total
    return out


def _targeted_interest(
    debts: Sequence[Debt], credits: Sequence[Credit], as_of: date, rates: Sequence[RatePeriod],
) -> list[InvoiceInterest]:
    """`interest_by_invoice` when a credit names an invoice: the coverage of each step."""
    steps = coverage_steps(debts, credits, as_of)
    step_days = [d for d, _ in steps]
    end = as_of + timedelta(days=1)
    out: list[InvoiceInterest] = []
    for k, debt in enumerate(debts):
        total = max(debt.total_fen, 0)
        start = debt.due_on + timedelta(days=1)
        cuts = {start, end} | {d for d in step_days if start < d < end}
        cuts |= {r.valid_from for r in rates if start < r.valid_from < end}
        points = sorted(c for c in cuts if start <= c <= end)
        exact, days = Decimal(0), 0
        for a, b in zip(points, points[1:], strict=False):
            open_fen = total - steps[bisect_right(step_days, a) - 1][1][k]
            if open_fen > 0:
                exact += Decimal(open_fen) * _rate_on(rates, a) / 100 * (b - a).days
                days += (b - a).days
        fen = int(exact.quantize(Decimal(1), ROUND_HALF_UP))
        out.append(InvoiceInterest(debt.number, debt.due_on, total,
                                   total - steps[-1][1][k], days, fen))
    return out


def total_interest_fen(
    debts: Sequence[Debt], credits: Sequence[Credit], as_of: date,
    rates: Sequence[RatePeriod] = DEFAULT_RATES,
) -> int:
    return sum(i.interest_fen for i in interest_by_invoice(debts, credits, as_of, rates))


def overdue(debts: Sequence[Debt], credits: Sequence[Credit], as_of: date) -> tuple[int, int]:
    """(overdue principal in feninga, days since the oldest overdue invoice fell due) at the
    end of `as_of`, allocated as above; (0, 0) when nothing is overdue."""
    if targets(debts, credits):
        covered = cover(debts, credits, as_of).covered_fen
        late = [(max(d.total_fen, 0) - c, d.due_on) for d, c in zip(debts, covered, strict=True)
                if max(d.total_fen, 0) > c and d.due_on < as_of]
        return (sum(a for a, _ in late),
                (as_of - min(d for _, d in late)).days if late else 0)
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
