"""Meter anomaly rules (pure): plain numbers and numpy arrays in, a decision out.

Each rule answers OPEN (the condition holds: open the alert or refresh it), CLOSE (the
condition has ended: close an active alert automatically) or None (not enough data to
say; leave things as they are). `stream.alerts` loads the data and applies the decisions.

Quantities are integer thousandths of the register unit: for water (m³) that is litres.
A daily series is one value per local day, oldest first, ``MISSING`` (-1) where no data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from rating.calendar import LOCAL_TZ, day_from_index, local_day_of
from schemas.meter_reads import MeterRead
from stream.vee import Interval, MeterInfo

I64 = npt.NDArray[np.int64]
Decision = Literal["open", "close"] | None
OPEN: Decision = "open"
CLOSE: Decision = "close"
MISSING = -1
REVERSE_REGISTER = "2.8.0"  # OBIS active energy export: an import-only meter never advances it
KNOWN_FLAGS = frozenset({"reverse", "tamper"})


@dataclass(frozen=True)
class Thresholds:
    """Thresholds of every rule; the defaults are the documented ones."""

    leak_flow_l_per_h: float = 5.0  # a night whose minimum flow stays above this is "wet"
    leak_nights: int = 3  # wet nights running that open a leak alert
    night_start_hour: int = 2  # local wall-clock window of the night minimum [02:00, 04:00)
    night_end_hour: int = 4
    night_max_interval_s: int = 2 * 3600  # longer intervals say nothing about a minimum
    zero_days: int = 3  # days at exactly zero that make a "drop to zero"
    zero_baseline_days: int = 14  # days before the zero run that must show steady use
    zero_min_baseline_days: int = 7  # … of which at least this many with data
    zero_baseline_active_pct: int = 80  # … and this share of those above zero
    high_factor: float = 3.0  # a day above factor × median of the history is "high"
    high_history_days: int = 30
    high_min_history_days: int = 7
    high_min_milli: int = 1000  # never flag a day below 1 unit (1 kWh, 1 m³)
    silent_hours: int = 48  # an AMR meter without any read for this long has lost contact
    reverse_min_milli: int = 1  # any advance on the export register


DEFAULT = Thresholds()


# --- water night flow (leak) ---------------------------------------------------------------


def night_window(day: int, th: Thresholds = DEFAULT) -> tuple[int, int]:
    """UTC epoch bounds of the night window of local day index ``day`` (wall clock)."""
    d = day_from_index(day)
    start = datetime.combine(d, time(th.night_start_hour), LOCAL_TZ)
    end = datetime.combine(d, time(th.night_end_hour), LOCAL_TZ)
    return int(start.timestamp()), int(end.timestamp())


def completed_nights(start: I64, end: I64, th: Thresholds = DEFAULT) -> I64:
    """Per interval, the newest night whose window ends inside it ((start, end]); -1: none.

    Only an interval that completes a night window can change that night's verdict."""
    out = np.full(len(start), -1, dtype=np.int64)
    if not len(start):
        return out
    last_day = local_day_of(end)
    for k in range(len(start)):
        for day in range(int(last_day[k]), int(last_day[k]) - 3, -1):
            _, b = night_window(day, th)
            if b <= end[k]:
                if b > start[k]:
                    out[k] = day
                break
    return out


def night_min_flows(
    start: I64, end: I64, qty_milli: I64, nights: Iterable[int], th: Thresholds = DEFAULT
) -> npt.NDArray[np.float64]:
    """Minimum flow (litres per hour) of one meter in each night's window; NaN when no
    interval short enough to tell overlaps the window."""
    duration = end - start
    usable = (duration > 0) & (duration <= th.night_max_interval_s)
    flow = np.zeros(len(start), dtype=np.float64)
    flow[usable] = qty_milli[usable] * 3600.0 / duration[usable]
    result = []
    for day in nights:
        a, b = night_window(day, th)
        inside = usable & (start < b) & (end > a)
        result.append(float(flow[inside].min()) if inside.any() else float("nan"))
    return np.array(result, dtype=np.float64)


def leak_decision(flows: npt.NDArray[np.float64], th: Thresholds = DEFAULT) -> Decision:
    """``flows``: minimum night flow of consecutive nights, oldest first, the newest last.

    A dry newest night closes; ``leak_nights`` wet nights in a row (none unknown) open."""
    if not len(flows) or np.isnan(flows[-1]):
        return None
    if flows[-1] <= th.leak_flow_l_per_h:
        return CLOSE
    last = flows[-th.leak_nights :]
    if len(last) == th.leak_nights and not np.isnan(last).any():
        return OPEN if bool((last > th.leak_flow_l_per_h).all()) else None
    return None


# --- electricity: reverse energy and tamper ------------------------------------------------


def read_flags(payload: Any) -> frozenset[str]:
    """Known flags of a read object's optional ``flags`` list; anything else is ignored
    (the read itself was already accepted: a bad flag must not lose it)."""
    flags = payload.get("flags") if isinstance(payload, dict) else None
    if not isinstance(flags, list):
        return frozenset()
    return frozenset(f for f in flags if isinstance(f, str) and f in KNOWN_FLAGS)


def reverse_register_decision(
    register: str, advance_milli: int, th: Thresholds = DEFAULT
) -> Decision:
    """An advance of the export register opens reverse energy; a still one closes it."""
    if register != REVERSE_REGISTER:
        return None
    return OPEN if advance_milli >= th.reverse_min_milli else CLOSE


# --- daily series: drop to zero, consumption far above history -----------------------------


def zero_drop_decision(daily: I64, th: Thresholds = DEFAULT) -> Decision:
    """``daily``: consumption of consecutive complete days, the newest last.

    Opens when the last ``zero_days`` are all exactly zero after a steady baseline;
    closes as soon as the newest day shows consumption again."""
    if not len(daily) or daily[-1] == MISSING:
        return None
    if daily[-1] > 0:
        return CLOSE
    run = daily[-th.zero_days :]
    if len(run) < th.zero_days or bool((run != 0).any()):
        return None
    base = daily[-th.zero_days - th.zero_baseline_days : -th.zero_days]
    known = base[base != MISSING]
    if len(known) < th.zero_min_baseline_days:
        return None
    active = int((known > 0).sum())
    return OPEN if active * 100 >= th.zero_baseline_active_pct * len(known) else None


def high_consumption_decision(daily: I64, th: Thresholds = DEFAULT) -> Decision:
    """The newest day against the median of the ``high_history_days`` before it."""
    if not len(daily) or daily[-1] == MISSING:
        return None
    history = daily[-1 - th.high_history_days : -1]
    known = history[history != MISSING]
    if len(known) < th.high_min_history_days:
        return None
    median = float(np.median(known))
    if median <= 0:
        return None  # no steady use to compare with (zero_drop's business)
    today = int(daily[-1])
    if today > th.high_factor * median and today >= th.high_min_milli:
        return OPEN
    return CLOSE


def median_of_history(daily: I64, th: Thresholds = DEFAULT) -> float:
    history = daily[-1 - th.high_history_days : -1]
    known = history[history != MISSING]
    return float(np.median(known)) if len(known) else 0.0


# --- communication loss ----------------------------------------------------------------------


def silent(last_read_at: I64, now: int, th: Thresholds = DEFAULT) -> npt.NDArray[np.bool_]:
    """Which meters have had no read for ``silent_hours`` at ``now``."""
    return np.asarray(last_read_at < now - th.silent_hours * 3600, dtype=np.bool_)


def merge(decisions: Iterable[Decision]) -> Decision:
    """Several observations of one (meter, kind) in a batch: any OPEN wins over CLOSE."""
    seen = set(decisions)
    return OPEN if OPEN in seen else CLOSE if CLOSE in seen else None


# --- findings of a batch that need no history ----------------------------------------------


@dataclass
class Finding:
    """One rule's decision about one (meter, kind), with what the operator should read."""

    meter_id: str
    kind: str
    decision: Decision
    metering_point_id: str | None = None
    register: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def flag_findings(
    reads: Sequence[tuple[MeterRead, Any]], meters: Mapping[str, MeterInfo]
) -> list[Finding]:
    out = []
    for read, payload in reads:
        meter = meters.get(read.meter_id)
        if meter is None or meter.service != "electricity":
            continue
        for flag in sorted(read_flags(payload)):
            kind = "reverse_energy" if flag == "reverse" else "tamper"
            out.append(Finding(read.meter_id, kind, OPEN, meter.metering_point_id,
                               read.register, {"text": f"meter reported '{flag}'",
                                               "read_at": iso(read.read_at)}))  # fmt: skip
    return out


def reverse_register_findings(
    intervals: Sequence[Interval], meters: Mapping[str, MeterInfo], th: Thresholds
) -> list[Finding]:
    out = []
    for iv in intervals:
        decision = reverse_register_decision(iv.register, iv.quantity_milli, th)
        if decision is None:
            continue
        text = (
            f"export register {iv.register} advanced {iv.quantity_milli / 1000:g} kWh"
            if decision == OPEN
            else f"export register {iv.register} still"
        )
        mp = meters[iv.meter_id].metering_point_id if iv.meter_id in meters else None
        out.append(Finding(iv.meter_id, "reverse_energy", decision, mp, iv.register,
                           {"text": text, "until": iso(iv.end_at)}))  # fmt: skip
    return out


def iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
