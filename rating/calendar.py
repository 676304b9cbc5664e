"""Local calendar of the utility (Europe/Sarajevo) as numpy lookup tables.

Billing days and months begin at local midnight; timestamps are UTC epoch seconds.
A table of the UTC instants of every local midnight turns "which local day is this
instant in" into one `searchsorted` over a whole batch.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

LOCAL_TZ = ZoneInfo("Europe/Sarajevo")
FIRST_DAY = date(2000, 1, 1)
LAST_DAY = date(2079, 12, 31)

I64 = npt.NDArray[np.int64]


@cache
def local_midnights() -> I64:
    """UTC epoch seconds of local midnight for every day FIRST_DAY … LAST_DAY + 1."""
    days = (LAST_DAY - FIRST_DAY).days + 2
    out = np.empty(days, dtype=np.int64)
    for i in range(days):
        d = FIRST_DAY + timedelta(days=i)
        out[i] = int(datetime.combine(d, time(0), LOCAL_TZ).timestamp())
    return out


def day_index(d: date) -> int:
    return (d - FIRST_DAY).days


def day_from_index(i: int) -> date:
    return FIRST_DAY + timedelta(days=int(i))


def local_midnight_epoch(d: date) -> int:
    return int(local_midnights()[day_index(d)])


def local_day_of(epochs: I64) -> I64:
    """Index of the local day containing each instant (midnight belongs to the new day)."""
    mids = local_midnights()
    if len(epochs) and (epochs.min() < mids[0] or epochs.max() >= mids[-1]):
        raise ValueError("timestamp outside the supported calendar 2000–2079")
    return np.searchsorted(mids, epochs, side="right").astype(np.int64) - 1


def epoch_to_local_date(epoch: int) -> date:
    return datetime.fromtimestamp(epoch, UTC).astimezone(LOCAL_TZ).date()


def month_bounds(period: str) -> tuple[date, date]:
    """'2026-03' → (2026-03-01, 2026-04-01): first day, first day of the next month."""
    try:
        year_s, month_s = period.split("-")
        year, month = int(year_s), int(month_s)
        first = date(year, month, 1)
    except ValueError as exc:
        raise ValueError(f"period must be YYYY-MM, got {period!r}") from exc
    nxt = date(year + 1, 1, 1) if month == 12 else date(year, month + 1, 1)
    return first, nxt


def period_of(d: date) -> str:
    return f"{d.year:04d}-{d.month:02d}"


def previous_period(period: str) -> str:
    first, _ = month_bounds(period)
    return period_of(first - timedelta(days=1))


def is_higher_season(d: date) -> bool:
    """Electricity higher season: 1 October – 31 March (does not follow clock changes)."""
    return d.month >= 10 or d.month <= 3
