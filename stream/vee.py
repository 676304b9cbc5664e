"""Validation of meter reads against the meter's master data and its last accepted read.

Pure: plain data in, verdicts and consumption intervals out. The stream adapters load the
master data and per-meter state, call `validate_reads`, and write what it returns.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from schemas.meter_reads import MeterRead

SERVICE_UNITS = {"electricity": {"kWh", "kvarh", "kW"}, "water": {"m3"}}
FUTURE_TOLERANCE_S = 15 * 60

ACCEPTED = "accepted"
DUPLICATE = "duplicate"
REJECTED = "rejected"
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


@dataclass(slots=True)
class Interval:
    meter_id: str
    register: str
    start_at: int
    end_at: int
    quantity_milli: int


@dataclass
class Validation:
    status: list[str]
    reason: list[str | None]
    intervals: list[Interval] = field(default_factory=list)
    new_state: dict[tuple[str, str], RegisterState] = field(default_factory=dict)


def static_reason(read: MeterRead, meter: MeterInfo | None, now: int) -> str | None:
    """Checks that need only the read and its meter, not the read history."""
    if meter is None:
        return f"unknown meter {read.meter_id}"
    if read.register not in meter.registers:
        return f"meter {read.meter_id} has no register {read.register}"
    if read.unit not in SERVICE_UNITS.get(meter.service, set()):
        return f"unit {read.unit} does not fit a {meter.service} meter"
    if read.read_at > now + FUTURE_TOLERANCE_S:
        return "read_at is in the future"
    if meter.installed_at is None:
        return f"meter {read.meter_id} is not installed at any metering point"
    if read.read_at < meter.installed_at:
        return "read_at is before the meter was installed"
    if meter.removed_at is not None and read.read_at > meter.removed_at:
        return "read_at is after the meter was removed"
    return None


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
) -> Validation:
    """Classify each read and derive the consumption intervals between accepted reads."""
    n = len(reads)
    status = [REJECTED] * n
    reason: list[str | None] = [None] * n
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, read in enumerate(reads):
        meter = meters.get(read.meter_id)
        why = static_reason(read, meter, now)
        if why is not None:
            reason[i] = why
            continue
        groups[(read.meter_id, read.register)].append(i)

    result = Validation(status, reason)
    for key, idxs in groups.items():
        meter = meters[key[0]]
        idxs.sort(key=lambda j: reads[j].read_at)
        last = state.get(key)
        first_last = last
        for j in idxs:
            read = reads[j]
            if last is not None and read.read_at < last.last_read_at:
                status[j] = CHECK_HISTORY
                continue
            if last is not None and read.read_at == last.last_read_at:
                if read.value_milli == last.last_value_milli:
                    status[j] = DUPLICATE
                else:
                    reason[j] = "conflicts with an accepted read at the same instant"
                continue
            if last is None:
                status[j] = ACCEPTED
                last = RegisterState(read.read_at, read.value_milli)
                continue
            adv = advance_milli(last.last_value_milli, read.value_milli, meter.digits)
            if adv is None:
                reason[j] = "register went backwards without a rollover"
                continue
            status[j] = ACCEPTED
            result.intervals.append(
                Interval(key[0], key[1], last.last_read_at, read.read_at, adv * meter.multiplier)
            )
            last = RegisterState(read.read_at, read.value_milli)
        if last is not None and last != first_last:
            result.new_state[key] = last
    return result
