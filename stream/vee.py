"""Validation of meter reads against the meter's master data and its last accepted read.

Pure: plain data in, verdicts, quality flags and consumption intervals out. The stream
adapters load the master data, per-register state and history, call `validate_batch` (or
`validate_reads`), and write what it returns. The rules themselves are in
`stream.vee_rules`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from rating.calendar import day_index, epoch_to_local_date
from schemas.meter_reads import MeterRead
from stream import vee_rules as rules
from stream.vee_rules import DEFAULT_CONFIG, VeeConfig

FUTURE_TOLERANCE_S = 15 * 60

ACCEPTED = "accepted"
DUPLICATE = "duplicate"
REJECTED = "rejected"
QUARANTINED = "quarantined"  # from the future: kept aside, released once time caught up
CHECK_HISTORY = "check_history"  # older than the last accepted read: look it up


@dataclass(frozen=True, slots=True)
class ContractSpan:
    contract_id: str
    tariff_code: str
    first_day: int  # local day index (rating.calendar), inclusive
    end_day: int  # exclusive


@dataclass(frozen=True, slots=True)
class MeterInfo:
    meter_id: str
    service: str
    digits: int
    multiplier: int
    registers: tuple[str, ...]
    metering_point_id: str | None
    installed_at: int | None  # epoch seconds of the current installation
    removed_at: int | None
    contracts: tuple[ContractSpan, ...] = ()


@dataclass(frozen=True, slots=True)
class RegisterState:
    last_read_at: int
    last_value_milli: int
    value_since: int | None = None  # first read showing the current value (zero runs)


@dataclass(slots=True)
class Interval:
    meter_id: str
    register: str
    start_at: int
    end_at: int
    quantity_milli: int


HistoryKey = tuple[str, str, str]  # metering point, service, register
History = Mapping[HistoryKey, tuple[int, int]]  # → (median daily milli, days of history)


@dataclass
class Validation:
    status: list[str]
    reason: list[str | None]
    intervals: list[Interval] = field(default_factory=list)
    new_state: dict[tuple[str, str], RegisterState] = field(default_factory=dict)
    flags: list[list[str]] = field(default_factory=list)  # quality flags per read
    interval_read: list[int] = field(default_factory=list)  # read closing each interval
    interval_since: list[int] = field(default_factory=list)  # value_since before it


def static_reason(
    read: MeterRead, meter: MeterInfo | None, now: int, tolerance_s: int = FUTURE_TOLERANCE_S
) -> str | None:
    """Checks that need only the read and its meter, not the read history. A reason that
    starts with `vee_rules.FUTURE_PREFIX` means quarantine, not rejection."""
    if meter is None:
        return f"unknown meter {read.meter_id}"
    if read.register not in meter.registers:
        return f"meter {read.meter_id} has no register {read.register}"
    why = rules.unit_reason(meter.service, read.register, read.unit)
    if why is not None:
        return why
    if rules.is_future(read.read_at, now, tolerance_s):
        return rules.future_reason(read.read_at, now)
    if meter.installed_at is None:
        return f"meter {read.meter_id} is not installed at any metering point"
    return rules.installation_reason(read.read_at, meter.installed_at, meter.removed_at)


def advance_milli(previous: int, current: int, digits: int) -> int | None:
    """Register advance, allowing one rollover of a meter with `digits` integer digits.

    A smaller value is a rollover only when the wrapped advance is below a tenth of the
    register's range; otherwise the register went backwards and the read is rejected.
    """
    if current >= previous:
        return current - previous
    modulus = 10**digits * 1000
    wrapped = current + modulus - previous
    if 0 < wrapped < modulus // 10 and previous < modulus:
        return wrapped
    return None


def validate_reads(
    reads: Sequence[MeterRead],
    meters: Mapping[str, MeterInfo],
    state: Mapping[tuple[str, str], RegisterState],
    now: int,
    *,
    config: VeeConfig = DEFAULT_CONFIG,
    excluded: Mapping[int, str] | None = None,
) -> Validation:
    """Classify each read, derive the consumption intervals between accepted reads and
    flag them (all rules but the spike, which needs history: see `validate_batch`).
    `excluded`: reads refused beforehand (position → reason), left out of the sequence."""
    n = len(reads)
    status = [REJECTED] * n
    reason: list[str | None] = [None] * n
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, read in enumerate(reads):
        if excluded and i in excluded:
            reason[i] = excluded[i]
            continue
        meter = meters.get(read.meter_id)
        why = static_reason(read, meter, now, config.future_tolerance_s)
        if why is not None:
            reason[i] = why
            if why.startswith(rules.FUTURE_PREFIX):
                status[i] = QUARANTINED
            continue
        groups[(read.meter_id, read.register)].append(i)

    result = Validation(status, reason, flags=[[] for _ in range(n)])
    for key, idxs in groups.items():
        _sequence(result, reads, meters[key[0]], key, idxs, state.get(key))
    _flag_intervals(result, reads, meters, config)
    return result


def _sequence(
    v: Validation,
    reads: Sequence[MeterRead],
    meter: MeterInfo,
    key: tuple[str, str],
    idxs: list[int],
    last: RegisterState | None,
) -> None:
    """One register's reads in time order against its last accepted state."""
    status, reason, flags = v.status, v.reason, v.flags
    idxs.sort(key=lambda j: reads[j].read_at)
    first_last = last
    if last is not None and rules.starts_register(last.last_read_at, meter.installed_at):
        last = None  # state of an earlier installation: this one starts afresh
    demand = rules.is_demand_register(key[1])
    meter_id, register = key
    digits, multiplier, removed = meter.digits, meter.multiplier, meter.removed_at
    add_interval, add_read, add_since = (
        v.intervals.append,
        v.interval_read.append,
        v.interval_since.append,
    )
    for j in idxs:
        read = reads[j]
        at, value = read.read_at, read.value_milli
        if last is not None and at <= last.last_read_at:
            if at < last.last_read_at:
                status[j] = CHECK_HISTORY
            elif value == last.last_value_milli:
                status[j] = DUPLICATE
            else:
                reason[j] = "conflicts with an accepted read at the same instant"
            continue
        if demand:  # a peak, not a count: stored as it is
            status[j] = ACCEPTED
            last = RegisterState(at, value)
            continue
        if last is None:
            status[j] = ACCEPTED
            flags[j].append(rules.INITIAL)
            if at == removed:
                flags[j].append(rules.FINAL)  # rules.is_final
            last = RegisterState(at, value, at)
            continue
        previous = last.last_value_milli
        adv = advance_milli(previous, value, digits)
        if adv is None:
            reason[j] = "register went backwards without a rollover"
            continue
        status[j] = ACCEPTED
        if value < previous:
            flags[j].append(rules.ROLLOVER)  # rules.is_rollover
        if at == removed:
            flags[j].append(rules.FINAL)
        since = last.last_read_at if last.value_since is None else last.value_since
        add_interval(Interval(meter_id, register, last.last_read_at, at, adv * multiplier))
        add_read(j)
        add_since(since)
        last = RegisterState(at, value, since if adv == 0 else at)
    if last is not None and last != first_last:
        v.new_state[key] = last


def _interval_arrays(v: Validation) -> tuple[rules.I64, rules.I64, rules.I64]:
    n = len(v.intervals)
    qty = np.fromiter((iv.quantity_milli for iv in v.intervals), np.int64, n)
    start = np.fromiter((iv.start_at for iv in v.intervals), np.int64, n)
    end = np.fromiter((iv.end_at for iv in v.intervals), np.int64, n)
    return qty, start, end


def _flag_intervals(
    v: Validation, reads: Sequence[MeterRead], meters: Mapping[str, MeterInfo], cfg: VeeConfig
) -> None:
    """Gap and zero-consumption flags over all the batch's intervals at once."""
    if not v.intervals:
        return
    qty, start, end = _interval_arrays(v)
    closing = v.interval_read
    gap_of = {source: cfg.gap_after(source) for source in {reads[j].source for j in closing}}
    max_gap = np.fromiter((gap_of[reads[j].source] for j in closing), np.int64, len(closing))
    for k in np.flatnonzero(rules.gap_mask(start, end, max_gap)).tolist():
        v.flags[closing[k]].append(rules.GAP)
    since = np.asarray(v.interval_since, dtype=np.int64)
    for k in np.flatnonzero(rules.zero_run_mask(qty, end, since, cfg)).tolist():
        meter = meters[v.intervals[k].meter_id]
        day = day_index(epoch_to_local_date(int(end[k])))
        spans = tuple((c.first_day, c.end_day) for c in meter.contracts)
        if rules.contract_active(day, spans):
            v.flags[closing[k]].append(rules.ZERO_CONSUMPTION)


def spike_history_keys(
    v: Validation, meters: Mapping[str, MeterInfo], cfg: VeeConfig = DEFAULT_CONFIG
) -> dict[HistoryKey, int]:
    """The registers whose history the spike rule needs (only those with an advance that
    could be a spike), each with the local day index its history window ends before."""
    out: dict[HistoryKey, int] = {}
    if not v.intervals:
        return out
    qty, start, end = _interval_arrays(v)
    for k in np.flatnonzero(rules.spike_candidates(qty, start, end, cfg)).tolist():
        iv = v.intervals[k]
        meter = meters[iv.meter_id]
        if meter.metering_point_id is None:
            continue
        key = (meter.metering_point_id, meter.service, iv.register)
        day = day_index(epoch_to_local_date(iv.start_at))
        out[key] = min(day, out.get(key, day))
    return out


def flag_spikes(
    v: Validation,
    reads: Sequence[MeterRead],
    meters: Mapping[str, MeterInfo],
    history: History,
    cfg: VeeConfig = DEFAULT_CONFIG,
) -> dict[int, str]:
    """Flag `spike` on the reads closing a spike interval; return read position → reason."""
    if not v.intervals or not history:
        return {}
    n = len(v.intervals)
    qty, start, end = _interval_arrays(v)
    median = np.zeros(n, dtype=np.int64)
    days = np.zeros(n, dtype=np.int64)
    for k, iv in enumerate(v.intervals):
        meter = meters[iv.meter_id]
        found = history.get((meter.metering_point_id or "", meter.service, iv.register))
        if found is not None:
            median[k], days[k] = found
    out: dict[int, str] = {}
    per_day = rules.per_day_milli(qty, start, end)
    for k in np.flatnonzero(rules.spike_mask(qty, start, end, median, days, cfg)).tolist():
        j = v.interval_read[k]
        v.flags[j].append(rules.SPIKE)
        out[j] = rules.spike_reason(float(per_day[k]), int(median[k]), reads[j].unit, cfg)
    return out


HistoryLoader = Callable[[Mapping[HistoryKey, int]], History]


def validate_batch(
    reads: Sequence[MeterRead],
    meters: Mapping[str, MeterInfo],
    state: Mapping[tuple[str, str], RegisterState],
    now: int,
    load_history: HistoryLoader,
    *,
    config: VeeConfig = DEFAULT_CONFIG,
    reject_spikes: bool = False,
) -> Validation:
    """`validate_reads` plus the spike rule: `load_history` is called (once, set-based) with
    the registers that need it. With `reject_spikes` (portal self-reads) a spike read is
    rejected instead of flagged, and the reads after it are sequenced without it."""
    excluded: dict[int, str] = {}
    history: dict[HistoryKey, tuple[int, int]] = {}
    asked: set[HistoryKey] = set()
    while True:
        v = validate_reads(reads, meters, state, now, config=config, excluded=excluded)
        keys = {k: d for k, d in spike_history_keys(v, meters, config).items() if k not in asked}
        if keys:
            asked.update(keys)
            history.update(load_history(keys))
        spikes = flag_spikes(v, reads, meters, history, config)
        if not reject_spikes or not spikes:
            return v
        excluded.update(spikes)
