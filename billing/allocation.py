"""Which part of each debt a customer's credits cover (issue #5), pure.

Debts are the customer's open items in FIFO order, as the caller gives them: invoices
oldest first, then charges (interest, fees, court costs). Credits are payments (> 0),
reversals and refunds (< 0) and write-offs (> 0).

A **targeted credit** names one of the debts (`Credit.invoice`: the invoice its payment
reference names; a reversal carries the target of the payment it reverses). A credit that
names no debt of the list (no reference, an invoice that is not this customer's or was
credited, a refund, a write-off) is **pool** money.

Coverage as of a moment uses the credits dated up to it and nothing else (it is recomputed
from the credits, so it does not depend on the order in which they were processed):

1. per named debt, the net of its targeted credits ``T`` covers ``clamp(T, 0, total)``; the
   rest ``T − covered`` (the excess of an over-payment, or a negative net) joins the pool.
   Because only the net counts, this equals applying the targeted credits in (date, id)
   order, each up to what is still open of its debt, and a reversal nets its payment out
   from the reversal's date on;
2. the pool, when positive, covers the parts still open oldest first (FIFO); a negative
   pool covers nothing;
3. the surplus is the pool left over (≥ 0).

Without a targeted credit this is exactly the pooled FIFO of before: pool = all credits.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from operator import itemgetter


@dataclass(frozen=True, slots=True)
class Debt:
    number: str
    due_on: date
    total_fen: int


@dataclass(frozen=True, slots=True)
class Credit:
    on: date
    amount_fen: int  # a payment or a write-off (> 0), a reversal or a refund (< 0)
    invoice: str | None = None  # the invoice the payment's reference names, if any


@dataclass(frozen=True, slots=True)
class Coverage:
    covered_fen: tuple[int, ...]  # per debt, in the order given
    surplus_fen: int  # pool money no debt needs (≥ 0)


def targets(debts: Sequence[Debt], credits: Sequence[Credit]) -> dict[str, int]:
    """Debt number → index of the first debt with that number, for the numbers credits
    name; empty when no credit is targeted (the pooled fast paths apply)."""
    named = {c.invoice for c in credits if c.invoice is not None}
    if not named:
        return {}
    out: dict[str, int] = {}
    for i, d in enumerate(debts):
        if d.number in named and d.number not in out:
            out[d.number] = i
    return out


def fifo(open_fen: Sequence[int], pool_fen: int) -> list[int]:
    """How much of each open amount (oldest first) the pool covers; a pool ≤ 0 covers
    nothing."""
    left = max(pool_fen, 0)
    covered = []
    for amount in open_fen:
        part = min(max(amount, 0), left)
        covered.append(part)
        left -= part
    return covered


def _settle(totals: Sequence[int], net: dict[int, int], pool: int) -> Coverage:
    """Coverage given the net targeted sum per debt index and the untargeted pool."""
    applied = [0] * len(totals)
    for i, t in net.items():
        applied[i] = min(max(t, 0), totals[i])
        pool += t - applied[i]
    rest = fifo([t - a for t, a in zip(totals, applied, strict=True)], pool)
    return Coverage(tuple(a + r for a, r in zip(applied, rest, strict=True)),
                    max(pool, 0) - sum(rest))


def cover(debts: Sequence[Debt], credits: Sequence[Credit], as_of: date | None = None
          ) -> Coverage:
    """Coverage of `debts` by the `credits` dated up to `as_of` (all when None)."""
    totals = [max(d.total_fen, 0) for d in debts]
    index = targets(debts, credits)
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
    return _settle(totals, net, pool)


def open_by_day(debts: Sequence[Debt], credits: Sequence[Credit], as_of: date
                ) -> list[list[tuple[int, int]]]:
    """Per debt, the part of its total (≥ 0) left open from each day on, as
    ``[(day ordinal, open_fen)]`` ascending, beginning with ``(1, total)`` (`date.min`, before
    any credit), with an entry only when the amount changes: a credit counts from the day
    after its date; credits after `as_of` are ignored. Equal on every day to
    ``total − cover(debts, credits, day − 1).covered_fen``.

    Kept incrementally instead of settling every debt on every credit day: a day's credits
    change their named debts, the pool and so the FIFO frontier (the first debt the pool
    does not cover in full); only those debts and the ones the frontier passes are looked
    at. O(credits + changes + frontier moves)."""
    totals = [t if t > 0 else 0 for t in (d.total_fen for d in debts)]
    index = targets(debts, credits)
    moves = sorted(((c.on.toordinal() + 1, index.get(c.invoice) if c.invoice is not None
                     else None, c.amount_fen) for c in credits if c.on <= as_of),
                   key=itemgetter(0))
    n = len(totals)
    runs = [[(1, t)] for t in totals]
    now_open = totals[:]
    residual = totals[:]  # what the pool may still cover: total − applied targeted money
    net = [0] * n  # net targeted sum per debt
    pool = 0  # untargeted credits plus the targeted excess (or shortfall)
    frontier = 0  # debts before it are covered in full by the pool …
    before = 0  # … which their residuals use up
    touched: list[int] = []
    for k, (day, i, amount) in enumerate(moves):
        if i is None:
            pool += amount
        else:
            was = totals[i] - residual[i]
            net[i] += amount
            applied = net[i] if 0 < net[i] < totals[i] else (0 if net[i] <= 0 else totals[i])
            pool += amount - applied + was
            if i < frontier:
                before += was - applied
            residual[i] = totals[i] - applied
            touched.append(i)
        if k + 1 < len(moves) and moves[k + 1][0] == day:
            continue  # the day's coverage once all its credits are in
        left = pool if pool > 0 else 0
        moved_from = frontier
        while before > left:
            frontier -= 1
            before -= residual[frontier]
        while frontier < n and before + residual[frontier] <= left:
            before += residual[frontier]
            frontier += 1
        if moved_from != frontier:  # the debts it passed, both ends included
            low, high = (moved_from, frontier) if moved_from < frontier else (frontier, moved_from)
            touched.extend(range(low, high + 1 if high < n else n))
        elif frontier < n:
            touched.append(frontier)
        for j in touched:
            if j < frontier:
                open_fen = 0
            elif j == frontier:
                open_fen = residual[j] - left + before
            else:
                open_fen = residual[j]
            if open_fen != now_open[j]:
                now_open[j] = open_fen
                runs[j].append((day, open_fen))
        touched.clear()
    return runs
