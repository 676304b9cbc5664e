"""Split consumption intervals at local midnight, exactly.

Each interval's integer quantity is shared among the local days it spans in proportion
to the seconds in each day, by cumulative flooring, so the pieces always add up to the
interval's quantity to the last Wh or litre. Vectorized over the whole batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from rating.calendar import local_day_of, local_midnights

I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class DayPieces:
    source: I64  # index of the interval each piece comes from
    start_at: I64
    end_at: I64
    day: I64  # local day index
    quantity_milli: I64


def split_at_local_midnight(start_at: I64, end_at: I64, quantity_milli: I64) -> DayPieces:
    if np.any(end_at <= start_at):
        raise ValueError("every interval must end after it starts")
    mids = local_midnights()
    first_day = local_day_of(start_at)
    last_day = local_day_of(end_at - 1)
    counts = last_day - first_day + 1
    total = int(counts.sum())
    source = np.repeat(np.arange(len(start_at), dtype=np.int64), counts)
    offsets = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    day = first_day[source] + offsets
    p_start = np.maximum(start_at[source], mids[day])
    p_end = np.minimum(end_at[source], mids[day + 1])
    # cumulative seconds at each piece's end, per interval
    span = end_at[source] - start_at[source]
    cum_secs = p_end - start_at[source]
    q = quantity_milli[source]
    cum_q = _floor_mul_div(q, cum_secs, span)
    prev_cum = np.where(offsets == 0, 0, np.roll(cum_q, 1))
    pieces_q = cum_q - prev_cum
    return DayPieces(source, p_start, p_end, day, pieces_q.astype(np.int64))


def _floor_mul_div(q: I64, num: I64, den: I64) -> I64:
    """floor(q × num / den) without int64 overflow for register-sized values."""
    whole, rest = np.divmod(q, den)
    return whole * num + (rest * num) // den
