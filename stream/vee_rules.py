"""Validation rules of meter reads (VEE), each a small pure function, and their quality flags.

A rule either refuses a read (a reason, the read is rejected or quarantined) or marks an
accepted read with a *quality flag*, stored in ``readings.quality``:

- ``rollover``: the register passed its last digit and restarted (meter ``digits``);
- ``spike``: the advance per day is above ``spike_factor`` × the median daily consumption
  of the metering point's register over the last ``spike_history_days`` days (portal
  self-reads with a spike are refused instead, see ``stream.pipeline.process_reads``);
- ``zero_consumption``: the register has not moved for ``zero_days`` days or more while a
  contract is active at the metering point;
- ``gap``: the previous read of the register is further away than the source's expected
  interval (AMR 2 days, manual/self/estimated reads 62 days). The interval is still
  split *evenly* over its days (a constant rate): the gap is flagged, not estimated;
- ``initial``: the first read of a register at its installation: it starts the register
  and makes no interval (a new meter does not consume from zero);
- ``final``: the read taken at the removal instant of the meter (``removed_at``), the last
  one the meter may give at that metering point.

Rules over intervals work on numpy arrays of the whole batch. History (daily consumption)
and installations are loaded set-based per batch by ``stream.directory``.
Quantities are integer thousandths of the unit; times are UTC epoch seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import numpy.typing as npt

ROLLOVER = "rollover"
SPIKE = "spike"
ZERO_CONSUMPTION = "zero_consumption"
GAP = "gap"
INITIAL = "initial"
FINAL = "final"
FLAGS = (ROLLOVER, SPIKE, ZERO_CONSUMPTION, GAP, INITIAL, FINAL)

DAY_S = 86_400
I64 = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]

_GAP_DEFAULTS = {"amr": 2 * DAY_S, "manual": 62 * DAY_S, "self": 62 * DAY_S,
                 "estimate": 62 * DAY_S}  # fmt: skip


@dataclass(frozen=True)
class VeeConfig:
    """Thresholds of the rules; the defaults are the documented ones."""

    future_tolerance_s: int = 15 * 60  # clock skew allowed before a read is quarantined
    spike_factor: float = 10.0
    spike_history_days: int = 60
    spike_min_history_days: int = 7  # fewer days of history: no judgement
    spike_floor_milli: int = 1000  # the median counts as at least 1 unit per day
    zero_days: int = 30
    expected_interval_s: Mapping[str, int] = field(default_factory=lambda: dict(_GAP_DEFAULTS))

    def __post_init__(self) -> None:
        if self.spike_factor <= 1:
            raise ValueError("spike_factor: must be above 1")
        for name in ("spike_history_days", "spike_min_history_days", "zero_days"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be at least 1")
        if self.future_tolerance_s < 0 or self.spike_floor_milli < 0:
            raise ValueError("future_tolerance_s and spike_floor_milli: must not be negative")

    def gap_after(self, source: str) -> int:
        """Longest expected distance between two reads of this source, in seconds."""
        return self.expected_interval_s.get(source, 62 * DAY_S)


DEFAULT_CONFIG = VeeConfig()


# --- refusals (one read, its meter's master data) -------------------------------------------


def is_demand_register(register: str) -> bool:
    """OBIS C.D.E with D = 6: a maximum-demand register (1.6.0 = kW import), which holds
    the period's peak, not a cumulative count: no intervals, no rollover."""
    parts = register.split(".")
    return len(parts) == 3 and parts[1] == "6"


def expected_unit(service: str, register: str) -> str | None:
    """The one unit a register of this service reports in (None: unknown service)."""
    if service == "water":
        return "m3"
    if service != "electricity":
        return None
    if is_demand_register(register):
        return "kW"
    return "kvarh" if register.split(".")[0] in ("3", "4", "5", "6", "7", "8") else "kWh"


@lru_cache(maxsize=4096)  # a batch repeats the same few (service, register, unit)
def unit_reason(service: str, register: str, unit: str) -> str | None:
    """Unit mismatch: kW only on a demand register, kvarh on reactive registers (C = 3–8),
    kWh on the other electricity registers, m³ on water."""
    want = expected_unit(service, register)
    if want is None:
        return f"unit {unit} does not fit a {service} meter"
    if unit == want:
        return None
    if service == "water" or unit not in ("kWh", "kvarh", "kW"):
        return f"unit {unit} does not fit a {service} meter"
    return f"unit {unit} does not fit register {register} (expected {want})"


def installation_reason(
    read_at: int, installed_at: int | None, removed_at: int | None
) -> str | None:
    """A read must fall inside the meter's installation [installed_at, removed_at]."""
    if installed_at is None:
        return "meter is not installed at any metering point"
    if read_at < installed_at:
        return "read_at is before the meter was installed"
    if removed_at is not None and read_at > removed_at:
        return "read_at is after the meter was removed"
    return None


def is_future(read_at: int, now: int, tolerance_s: int) -> bool:
    return read_at > now + tolerance_s


FUTURE_PREFIX = "read_at is in the future"


def future_reason(read_at: int, now: int) -> str:
    ahead = read_at - now
    return f"{FUTURE_PREFIX}: {ahead // 3600} h {ahead % 3600 // 60} min ahead of the clock"


# --- flags of one read against its predecessor ---------------------------------------------


def is_rollover(previous_milli: int, current_milli: int) -> bool:
    """An accepted advance with a smaller register value went over the last digit."""
    return current_milli < previous_milli


def starts_register(last_read_at: int | None, installed_at: int | None) -> bool:
    """No predecessor at this installation: the state is absent or from an earlier one
    (a meter re-installed after repair starts afresh, not from its old value)."""
    return last_read_at is None or (installed_at is not None and last_read_at < installed_at)


def is_final(read_at: int, removed_at: int | None) -> bool:
    return removed_at is not None and read_at == removed_at


# --- vectorized rules over the batch's intervals -------------------------------------------


def per_day_milli(quantity: I64, start: I64, end: I64) -> npt.NDArray[np.float64]:
    """Advance per day; intervals shorter than a day count as one day (an hour of cooking
    is not a spike against the daily median)."""
    days = np.maximum(end - start, DAY_S) / DAY_S
    return quantity / days


def spike_candidates(quantity: I64, start: I64, end: I64, cfg: VeeConfig = DEFAULT_CONFIG) -> Mask:
    """Intervals that could be a spike whatever the history (above factor × floor): only
    their history has to be loaded."""
    return per_day_milli(quantity, start, end) > cfg.spike_factor * cfg.spike_floor_milli


def spike_mask(
    quantity: I64,
    start: I64,
    end: I64,
    median_milli: I64,
    history_days: I64,
    cfg: VeeConfig = DEFAULT_CONFIG,
) -> Mask:
    """Advance per day > factor × median daily consumption (at least the floor), judged
    only with ``spike_min_history_days`` days of history (``history_days`` per interval)."""
    baseline = np.maximum(median_milli, cfg.spike_floor_milli)
    known = history_days >= cfg.spike_min_history_days
    return known & (per_day_milli(quantity, start, end) > cfg.spike_factor * baseline)


def zero_run_mask(
    quantity: I64, end: I64, value_since: I64, cfg: VeeConfig = DEFAULT_CONFIG
) -> Mask:
    """The register did not move in this interval and has shown the same value since
    ``value_since`` for ``zero_days`` or longer (the contract check is separate)."""
    return (quantity == 0) & (end - value_since >= cfg.zero_days * DAY_S)


def gap_mask(start: I64, end: I64, max_gap_s: I64) -> Mask:
    """The previous read is further away than the expected interval of the source."""
    return end - start > max_gap_s


def contract_active(day: int, spans: tuple[tuple[int, int], ...]) -> bool:
    """Whether the local day index falls in one of the [first_day, end_day) spans."""
    return any(first <= day < end for first, end in spans)


def median_milli(daily_milli: I64) -> int:
    """The lower median of daily quantities (what ``percentile_disc(0.5)`` gives in SQL)."""
    if not len(daily_milli):
        raise ValueError("daily_milli: needs at least one day")
    ordered = np.sort(daily_milli)
    return int(ordered[(len(ordered) - 1) // 2])


def spike_reason(per_day: float, median: int, unit: str, cfg: VeeConfig = DEFAULT_CONFIG) -> str:
    usual = _qty(max(median, cfg.spike_floor_milli))
    return (
        f"spike: the advance of {_qty(round(per_day))} {unit} per day is more than "
        f"{cfg.spike_factor:g} × the usual daily consumption ({usual} {unit}, median of the "
        f"last {cfg.spike_history_days} days); check the value"
    )


def _qty(milli: int) -> str:
    return f"{milli // 1000}.{milli % 1000:03d}"
