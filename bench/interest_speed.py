"""CPU time per customer of `billing.interest.interest_by_invoice` against the algorithm it
replaced (kept below as `reference_interest_by_invoice`, the oracle of
`tests/unit/test_interest_fast_path.py` too), on the same population; both results must
be identical, the bench asserts it before printing.

    .venv/bin/python -m bench.interest_speed [--customers 20000] [--runs 3] [--seed 5]

Population (seeded): 12–24 monthly invoices per customer (issued on the 1st, due on the
16th), one payment per invoice whose reference names it: most on time, some late, some
partial, some overpaid, a few missing, a few reversed later; a few untargeted payments
(cash desk without a reference). Interest as of the end of the last month, 0.03 % a day,
raised to 0.05 % for the last six months (two rate periods). Figures are CPU seconds
(`time.process_time`), medians of the runs.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

from billing import BillingError
from billing.allocation import Coverage, Credit, Debt
from billing.interest import InvoiceInterest, RatePeriod, check_rates, interest_by_invoice

Customer = tuple[list[Debt], list[Credit]]

# ---- the reference: the code before the speed-up, verbatim but for the names -------------


def reference_targets(debts: Sequence[Debt], credits: Sequence[Credit]) -> dict[str, int]:
    named = {c.invoice for c in credits if c.invoice is not None}
    if not named:
        return {}
    out: dict[str, int] = {}
    for i, d in enumerate(debts):
        if d.number in named and d.number not in out:
            out[d.number] = i
    return out


def reference_fifo(open_fen: Sequence[int], pool_fen: int) -> list[int]:
    left = max(pool_fen, 0)
    covered = []
    for amount in open_fen:
        part = min(max(amount, 0), left)
        covered.append(part)
        left -= part
    return covered


def reference_settle(totals: Sequence[int], net: dict[int, int], pool: int) -> Coverage:
    applied = [0] * len(totals)
    for i, t in net.items():
        applied[i] = min(max(t, 0), totals[i])
        pool += t - applied[i]
    rest = reference_fifo([t - a for t, a in zip(totals, applied, strict=True)], pool)
    return Coverage(tuple(a + r for a, r in zip(applied, rest, strict=True)),
                    max(pool, 0) - sum(rest))


def reference_cover(debts: Sequence[Debt], credits: Sequence[Credit], as_of: date | None = None
                    ) -> Coverage:
    totals = [max(d.total_fen, 0) for d in debts]
    index = reference_targets(debts, credits)
    net: dict[int, int] = defaultdict(int)
    pool = 0
    for c in credits:
        if as_of is not None and c.on > as_of:
            continue
        i = index.get(c.invoice) if c.invoice is not None else None
        if i is None:
            pool += c.amount_fen
        else:
            net[i] += c.amount_fen
    return reference_settle(totals, net, pool)


def reference_coverage_steps(debts: Sequence[Debt], credits: Sequence[Credit], as_of: date
                             ) -> list[tuple[date, tuple[int, ...]]]:
    totals = [max(d.total_fen, 0) for d in debts]
    index = reference_targets(debts, credits)
    by_day: dict[date, list[Credit]] = defaultdict(list)
    for c in credits:
        if c.on <= as_of:
            by_day[c.on].append(c)
    net: dict[int, int] = defaultdict(int)
    pool = 0
    steps = [(date.min, reference_settle(totals, net, pool).covered_fen)]
    for day in sorted(by_day):
        for c in by_day[day]:
            i = index.get(c.invoice) if c.invoice is not None else None
            if i is None:
                pool += c.amount_fen
            else:
                net[i] += c.amount_fen
        steps.append((day + timedelta(days=1), reference_settle(totals, net, pool).covered_fen))
    return steps


def reference_rate_on(rates: Sequence[RatePeriod], day: date) -> Decimal:
    starts = [r.valid_from for r in rates]
    i = bisect_right(starts, day) - 1
    if i < 0:
        raise BillingError(f"rates: no interest rate is valid on {day.isoformat()}")
    return rates[i].daily_percent


def reference_interest_by_invoice(
    debts: Sequence[Debt], credits: Sequence[Credit], as_of: date, rates: Sequence[RatePeriod],
) -> list[InvoiceInterest]:
    check_rates(rates)
    if reference_targets(debts, credits):
        return reference_targeted_interest(debts, credits, as_of, rates)
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
    before = 0
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
                exact += Decimal(open_fen) * reference_rate_on(rates, a) / 100 * (b - a).days
                days += (b - a).days
        open_end = total - min(max(running - before, 0), total)
        fen = int(exact.quantize(Decimal(1), ROUND_HALF_UP))
        out.append(InvoiceInterest(debt.number, debt.due_on, total, open_end, days, fen))
        before += total
    return out


def reference_targeted_interest(
    debts: Sequence[Debt], credits: Sequence[Credit], as_of: date, rates: Sequence[RatePeriod],
) -> list[InvoiceInterest]:
    steps = reference_coverage_steps(debts, credits, as_of)
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
                exact += Decimal(open_fen) * reference_rate_on(rates, a) / 100 * (b - a).days
                days += (b - a).days
        fen = int(exact.quantize(Decimal(1), ROUND_HALF_UP))
        out.append(InvoiceInterest(debt.number, debt.due_on, total,
                                   total - steps[-1][1][k], days, fen))
    return out


def reference_overdue(debts: Sequence[Debt], credits: Sequence[Credit], as_of: date
                      ) -> tuple[int, int]:
    if reference_targets(debts, credits):
        covered = reference_cover(debts, credits, as_of).covered_fen
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


# ---- the population ----------------------------------------------------------------------

FIRST_MONTH = date(2024, 1, 1)
AS_OF = date(2025, 12, 31)
RATES = (RatePeriod(date(2000, 1, 1), Decimal("0.03")), RatePeriod(date(2025, 7, 1),
                                                                  Decimal("0.05")))


def customer(rng: random.Random, number: int) -> Customer:
    """Invoices for the last 12–24 months up to `AS_OF`, each paid by its reference."""
    months = rng.randint(12, 24)
    debts: list[Debt] = []
    credits: list[Credit] = []
    for m in range(24 - months, 24):
        issued = date(FIRST_MONTH.year + m // 12, m % 12 + 1, 1)
        ref = f"{number:06d}-{m:02d}"
        total = rng.randint(1500, 25_000)
        due = issued + timedelta(days=15)
        debts.append(Debt(ref, due, total))
        kind = rng.random()
        if kind < 0.05:
            continue  # not paid
        paid_on = due - timedelta(days=rng.randint(0, 10))
        if kind < 0.35:
            paid_on = due + timedelta(days=rng.randint(1, 90))  # late
        amount = total
        if kind > 0.93:
            amount = total * rng.randint(20, 90) // 100  # partial
        elif kind > 0.88:
            amount = total + rng.randint(100, 5000)  # overpaid
        untargeted = rng.random() < 0.03  # cash desk, no reference
        credits.append(Credit(paid_on, amount, None if untargeted else ref))
        if rng.random() < 0.02:  # bounced: reversed some days later, carrying the target
            credits.append(Credit(paid_on + timedelta(days=rng.randint(2, 20)), -amount,
                                  None if untargeted else ref))
    return debts, [c for c in credits if c.on <= AS_OF + timedelta(days=30)]


def population(customers: int, seed: int) -> list[Customer]:
    rng = random.Random(seed)
    return [customer(rng, n) for n in range(customers)]


def cpu_per_customer(fn: Callable[[list[Debt], list[Credit]], object],
                     people: list[Customer]) -> float:
    t0 = time.process_time()
    for debts, credits in people:
        fn(debts, credits)
    return (time.process_time() - t0) / len(people)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    people = population(args.customers, args.seed)
    for debts, credits in people:
        assert interest_by_invoice(debts, credits, AS_OF, RATES) == \
            reference_interest_by_invoice(debts, credits, AS_OF, RATES)

    def new(debts: list[Debt], credits: list[Credit]) -> object:
        return interest_by_invoice(debts, credits, AS_OF, RATES)

    def old(debts: list[Debt], credits: list[Credit]) -> object:
        return reference_interest_by_invoice(debts, credits, AS_OF, RATES)

    new_runs, old_runs = [], []
    for _ in range(args.runs):  # alternately, so that the machine's load hits both alike
        new_runs.append(cpu_per_customer(new, people))
        old_runs.append(cpu_per_customer(old, people))
    new_s, old_s = statistics.median(new_runs), statistics.median(old_runs)
    invoices = sum(len(d) for d, _ in people)
    payments = sum(len(c) for _, c in people)
    print(f"customers {len(people):,}, invoices {invoices:,}, credits {payments:,}; "
          f"results identical for every customer")
    print(f"interest_by_invoice: {new_s * 1e6:8.1f} µs CPU per customer (runs: "
          + ", ".join(f"{x * 1e6:.1f}" for x in new_runs) + ")")
    print(f"reference (before):  {old_s * 1e6:8.1f} µs CPU per customer (runs: "
          + ", ".join(f"{x * 1e6:.1f}" for x in old_runs) + ")")
    print(f"speed-up: {old_s / new_s:.1f}×")


if __name__ == "__main__":
    main()
