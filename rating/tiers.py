"""Tiered (block) prices on a month's quantity, in exact integers.

Graduated: each block of the quantity is priced at its own tier's price (the first 100 kWh
at one price, the next at another); one invoice line per non-empty block, each rounded
half up. Volume: the whole quantity is priced at the price of the tier it falls into.
A tier's ``up_to`` is inclusive: with ``up_to 100`` exactly 100 kWh stays in the first
tier. The last tier is open (``up_to: null``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from rating import RatingError
from rating.money import line_amount_fen, parse_price_micro, parse_quantity_milli, round_half_up_div

I64 = npt.NDArray[np.int64]


class TierError(RatingError):
    """Invalid tiers or quantity; the message names the field."""


@dataclass(frozen=True)
class Tier:
    up_to_milli: int | None  # inclusive upper bound of the block; None = open
    price_micro: int


@dataclass(frozen=True)
class TierLine:
    """One block of a graduated charge, or the whole quantity of a volume charge."""

    tier: int  # index of the tier
    quantity_milli: int
    price_micro: int
    amount_fen: int


def parse_tiers(raw: Any) -> tuple[Tier, ...]:
    """``[{"up_to": "100", "price": "0.10"}, {"up_to": null, "price": "0.15"}]``; errors
    are named relative to the list, e.g. ``tiers[1].up_to: …``."""
    if not isinstance(raw, list) or not raw:
        raise TierError("tiers: must be a non-empty list")
    out: list[Tier] = []
    previous = 0
    for i, doc in enumerate(raw):
        where = f"tiers[{i}]"
        if not isinstance(doc, dict):
            raise TierError(f"{where}: must be an object")
        if "price" not in doc or doc["price"] in (None, ""):
            raise TierError(f"{where}.price: is required")
        try:
            price = parse_price_micro(doc["price"])
        except ValueError as exc:
            raise TierError(f"{where}.price: {exc}") from exc
        if price < 0:
            raise TierError(f"{where}.price: must not be negative")
        if "up_to" not in doc:
            raise TierError(f"{where}.up_to: is required (null for the last tier)")
        up_to = doc["up_to"]
        last = i == len(raw) - 1
        if up_to is None:
            if not last:
                raise TierError(f"{where}.up_to: only the last tier may be open (null)")
            out.append(Tier(None, price))
            continue
        if last:
            raise TierError(f"{where}.up_to: the last tier must be open (null)")
        try:
            bound = parse_quantity_milli(up_to)
        except ValueError as exc:
            raise TierError(f"{where}.up_to: {exc}") from exc
        if bound <= previous:
            raise TierError(f"{where}.up_to: must be greater than the previous bound "
                            f"({previous / 1000:g})")  # fmt: skip
        out.append(Tier(bound, price))
        previous = bound
    return tuple(out)


def _check(quantity_milli: int) -> None:
    if quantity_milli < 0:
        raise TierError("quantity_milli: must not be negative for a tiered price")


def graduated_lines(quantity_milli: int, tiers: tuple[Tier, ...]) -> list[TierLine]:
    """One line per non-empty block (the first block even when the quantity is 0)."""
    _check(quantity_milli)
    lines: list[TierLine] = []
    lower = 0
    for i, tier in enumerate(tiers):
        upper = quantity_milli if tier.up_to_milli is None else tier.up_to_milli
        block = max(0, min(quantity_milli, upper) - lower)
        if block or i == 0:
            lines.append(TierLine(i, block, tier.price_micro,
                                  line_amount_fen(block, tier.price_micro)))  # fmt: skip
        if tier.up_to_milli is None or quantity_milli <= tier.up_to_milli:
            break
        lower = tier.up_to_milli
    return lines


def graduated_amount_nano(quantity_milli: int, tiers: tuple[Tier, ...]) -> int:
    """Unrounded amount in nano-KM (quantity in thousandths × price in micro-KM)."""
    return int(graduated_amounts_nano(np.array([quantity_milli], dtype=np.int64), tiers)[0])


def graduated_amounts_nano(quantity_milli: I64, tiers: tuple[Tier, ...]) -> I64:
    """Vectorized: the unrounded graduated amount of many monthly quantities."""
    q = np.asarray(quantity_milli, dtype=np.int64)
    if len(q) and q.min() < 0:
        raise TierError("quantity_milli: must not be negative for a tiered price")
    total = np.zeros(len(q), dtype=np.int64)
    lower = 0
    for tier in tiers:
        upper = q if tier.up_to_milli is None else np.minimum(q, tier.up_to_milli)
        total += np.maximum(upper - lower, 0) * tier.price_micro
        if tier.up_to_milli is None:
            break
        lower = tier.up_to_milli
    return total


def volume_tier(quantity_milli: int, tiers: tuple[Tier, ...]) -> int:
    """Index of the tier the whole quantity falls into."""
    _check(quantity_milli)
    for i, tier in enumerate(tiers):
        if tier.up_to_milli is None or quantity_milli <= tier.up_to_milli:
            return i
    raise TierError("tiers: the last tier must be open (null)")


def volume_line(quantity_milli: int, tiers: tuple[Tier, ...]) -> TierLine:
    i = volume_tier(quantity_milli, tiers)
    price = tiers[i].price_micro
    return TierLine(i, quantity_milli, price, line_amount_fen(quantity_milli, price))


def prorate_tiers(tiers: tuple[Tier, ...], days: int, days_in_month: int) -> tuple[Tier, ...]:
    """Block bounds for a part of the month (``bound × days / days_in_month``, half up)."""
    if not 0 < days <= days_in_month:
        raise TierError("days: must be between 1 and the days in the month")
    out: list[Tier] = []
    previous = 0
    for tier in tiers:
        if tier.up_to_milli is None:
            out.append(tier)
            continue
        bound = max(round_half_up_div(tier.up_to_milli * days, days_in_month), previous + 1)
        out.append(Tier(bound, tier.price_micro))
        previous = bound
    return tuple(out)
