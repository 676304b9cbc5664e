"""Late-payment interest (zatezna kamata), pure.

Brčko District: 0.03 % per day, simple (no interest on interest), on the overdue principal
of each invoice. The principal still open on a day follows `billing.allocation`: a payment
whose reference names an invoice pays that invoice (its excess and all other credits are
pooled), the pool covers the oldest open invoice first, prepayments included.
`allocation.open_by_day` gives each invoice's open principal as runs of constant amount
(kept incrementally over the credit days), and each run accrues ``open × rate × days``.

Day count: day *d* accrues interest when ``due_on < d ≤ as_of`` on the principal left open
by the credits dated before *d*; a payment on day *p* therefore still bears that day's
interest (days = paid_on − due_on, the usual "from maturity to payment" count). The rate
of a day is the latest `RatePeriod` valid from that day or earlier (rates are configurable
with effective dates). Each invoice's interest is summed exactly and rounded half up to
the fening once: in integers (the rates scaled to whole numbers) when the bound shows that
no step of the Decimal sum could round in the current context, else in Decimal step by
step as before (same result either way, also for absurd rates or amounts).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal, getcontext

from billing import BillingError
from billing.allocation import Credit, Debt, cover, open_by_day, targets

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
    runs = open_by_day(debts, credits, as_of)
    end = as_of.toordinal() + 1
    starts = [r.valid_from.toordinal() for r in rates]
    scale, per_day = _scaled(rates)
    largest = max([0, *(d.total_fen for d in debts)])
    longest = max([0, *(end - d.due_on.toordinal() - 1 for d in debts)])  # days due, at most
    if largest * max(per_day) * longest < 10 ** (getcontext().prec - 1):
        # every step of the Decimal sum below would be exact: the integer sum is the same
        return [_accrued(d, run, end, starts, per_day, scale) for d, run in zip(
            debts, runs, strict=True)]
    cuts = sorted({c.on.toordinal() + 1 for c in credits if c.on <= as_of} | set(starts))
    return [_accrued_decimal(d, run, end, cuts, rates) for d, run in zip(
        debts, runs, strict=True)]


def _scaled(rates: Sequence[RatePeriod]) -> tuple[int, list[int]]:
    """(s, daily rates × 10^s as integers) for the least s that makes every rate whole."""
    parts = [r.daily_percent.as_tuple() for r in rates]
    scale = max(0, *(-int(p.exponent) for p in parts))
    return scale, [int("".join(map(str, p.digits))) * 10 ** (int(p.exponent) + scale)
                   for p in parts]


def _no_rate(day: int) -> BillingError:
    return BillingError(f"rates: no interest rate is valid on {date.fromordinal(day).isoformat()}")


def _accrued(debt: Debt, run: list[tuple[int, int]], end: int, starts: list[int],
             per_day: list[int], scale: int) -> InvoiceInterest:
    """The invoice's interest summed in integers over the runs of constant open principal:
    the exact Decimal sum of the day count, since no step of it rounds (see the bound)."""
    start = debt.due_on.toordinal() + 1
    exact = days = 0
    last = len(run) - 1
    for k, (a, open_fen) in enumerate(run):
        b = run[k + 1][0] if k < last else end
        if open_fen <= 0 or b <= start or a >= end:
            continue
        if a < start:
            a = start
        if b > end:
            b = end
        if a < starts[0]:
            raise _no_rate(a)
        days += b - a
        i = bisect_right(starts, a) - 1
        while i + 1 < len(starts) and starts[i + 1] < b:  # a rate change within [a, b)
            exact += open_fen * per_day[i] * (starts[i + 1] - a)
            a, i = starts[i + 1], i + 1
        exact += open_fen * per_day[i] * (b - a)
    unit = 100 * 10 ** scale  # half up, exact ≥ 0:
    return InvoiceInterest(debt.number, debt.due_on, run[0][1], run[-1][1], days,
                           (2 * exact + unit) // (2 * unit))


def _accrued_decimal(debt: Debt, run: list[tuple[int, int]], end: int, cuts: list[int],
                     rates: Sequence[RatePeriod]) -> InvoiceInterest:
    """The day count step by step in Decimal, cut on every credit day and rate change as
    before issue #5's speed-up, for sums the context's precision may round."""
    start = debt.due_on.toordinal() + 1
    points = [start, *(c for c in cuts if start < c < end), end] if start < end else []
    exact, days, k = Decimal(0), 0, 0
    for a, b in zip(points, points[1:], strict=False):
        while k + 1 < len(run) and run[k + 1][0] <= a:
            k += 1
        open_fen = run[k][1]
        if open_fen > 0:
            exact += Decimal(open_fen) * _rate_on(rates, date.fromordinal(a)) / 100 * (b - a)
            days += b - a
    fen = int(exact.quantize(Decimal(1), ROUND_HALF_UP))
    return InvoiceInterest(debt.number, debt.due_on, max(debt.total_fen, 0), run[-1][1], days,
                           fen)


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
