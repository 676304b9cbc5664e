"""Each VEE rule on its own, then the rules together in `validate_reads` / `validate_batch`."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime

import numpy as np
import pytest

from rating.calendar import day_index
from schemas.meter_reads import MeterRead
from stream import vee_rules as rules
from stream.vee import (
    ACCEPTED,
    QUARANTINED,
    REJECTED,
    ContractSpan,
    HistoryKey,
    MeterInfo,
    RegisterState,
    validate_batch,
    validate_reads,
)
from stream.vee_rules import DAY_S, VeeConfig

T0 = int(datetime(2026, 3, 1, tzinfo=UTC).timestamp())
H = 3600
CONTRACT = ContractSpan("C1", "EL-HH", day_index(date(2025, 1, 1)), day_index(date(2079, 1, 1)))


def meter(**kw: object) -> MeterInfo:
    base: dict[str, object] = {
        "meter_id": "E1", "service": "electricity", "digits": 5, "multiplier": 1,
        "registers": ("1.8.1", "1.6.0"), "metering_point_id": "MP1", "installed_at": 0,
        "removed_at": None, "contracts": (CONTRACT,),
    }  # fmt: skip
    base.update(kw)
    return MeterInfo(**base)  # type: ignore[arg-type]


def rd(at: int, value: int, *, register: str = "1.8.1", unit: str = "kWh", source: str = "amr",
       meter_id: str = "E1") -> MeterRead:  # fmt: skip
    return MeterRead(meter_id, register, at, value, unit, source)


def arr(*values: int) -> rules.I64:
    return np.array(values, dtype=np.int64)


# --- refusals --------------------------------------------------------------------------------


def test_demand_register_is_obis_d_6() -> None:
    assert rules.is_demand_register("1.6.0") and rules.is_demand_register("1.6.2")
    assert not rules.is_demand_register("1.8.0")
    assert not rules.is_demand_register("1.6")
    assert not rules.is_demand_register("8.0")


@pytest.mark.parametrize(
    ("service", "register", "unit", "reason"),
    [
        ("electricity", "1.8.1", "kWh", None),
        ("electricity", "3.8.0", "kvarh", None),
        ("electricity", "1.6.0", "kW", None),
        ("water", "8.0", "m3", None),
        ("electricity", "1.8.1", "kW", "unit kW does not fit register 1.8.1 (expected kWh)"),
        ("electricity", "1.6.0", "kWh", "unit kWh does not fit register 1.6.0 (expected kW)"),
        ("electricity", "3.8.0", "kWh", "unit kWh does not fit register 3.8.0 (expected kvarh)"),
        ("electricity", "1.8.1", "m3", "unit m3 does not fit a electricity meter"),
        ("water", "8.0", "kWh", "unit kWh does not fit a water meter"),
        ("gas", "1.8.0", "m3", "unit m3 does not fit a gas meter"),
    ],
)
def test_unit_mismatch(service: str, register: str, unit: str, reason: str | None) -> None:
    assert rules.unit_reason(service, register, unit) == reason


def test_installation_bounds_are_inclusive() -> None:
    assert rules.installation_reason(100, 100, 200) is None
    assert rules.installation_reason(200, 100, 200) is None
    assert rules.installation_reason(99, 100, 200) == "read_at is before the meter was installed"
    assert rules.installation_reason(201, 100, 200) == "read_at is after the meter was removed"
    assert rules.installation_reason(10**9, 100, None) is None
    assert (
        rules.installation_reason(5, None, None) == "meter is not installed at any metering point"
    )


def test_future_tolerance_boundary() -> None:
    assert not rules.is_future(1000 + 900, 1000, 900)
    assert rules.is_future(1000 + 901, 1000, 900)
    assert rules.future_reason(1000 + 2 * H + 5 * 60, 1000) == (
        "read_at is in the future: 2 h 5 min ahead of the clock"
    )


def test_config_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="spike_factor"):
        VeeConfig(spike_factor=1)
    with pytest.raises(ValueError, match="zero_days"):
        VeeConfig(zero_days=0)
    with pytest.raises(ValueError, match="future_tolerance_s"):
        VeeConfig(future_tolerance_s=-1)
    assert VeeConfig().gap_after("amr") == 2 * DAY_S
    assert VeeConfig().gap_after("self") == 62 * DAY_S


# --- single-read flags -----------------------------------------------------------------------


def test_rollover_and_start_of_register() -> None:
    assert rules.is_rollover(99_990_000, 10_000)
    assert not rules.is_rollover(10_000, 10_000)
    assert rules.starts_register(None, 100)
    assert rules.starts_register(50, 100)  # state of an earlier installation
    assert not rules.starts_register(100, 100)
    assert rules.is_final(200, 200) and not rules.is_final(199, 200) and not rules.is_final(5, None)


# --- vectorized rules ------------------------------------------------------------------------


def test_per_day_counts_short_intervals_as_a_day() -> None:
    per_day = rules.per_day_milli(arr(2000, 2000, 6000), arr(0, 0, 0), arr(H, DAY_S, 3 * DAY_S))
    assert per_day.tolist() == [2000.0, 2000.0, 2000.0]


def test_spike_against_median_floor_and_history_length() -> None:
    cfg = VeeConfig(spike_factor=10, spike_min_history_days=7, spike_floor_milli=1000)
    qty = arr(50_001, 50_000, 50_001, 9_999, 10_001)
    start = arr(0, 0, 0, 0, 0)
    end = arr(DAY_S, DAY_S, DAY_S, DAY_S, DAY_S)
    median = arr(5000, 5000, 5000, 0, 0)
    days = arr(60, 60, 6, 60, 60)
    got = rules.spike_mask(qty, start, end, median, days, cfg)
    # strictly above 10 × 5 kWh; too little history; a zero median counts as 1 kWh
    assert got.tolist() == [True, False, False, False, True]
    assert rules.spike_candidates(qty, start, end, cfg).tolist() == [True, True, True, False, True]


def test_zero_run_boundary() -> None:
    cfg = VeeConfig(zero_days=30)
    end = arr(30 * DAY_S, 30 * DAY_S - 1, 40 * DAY_S)
    got = rules.zero_run_mask(arr(0, 0, 5), end, arr(0, 0, 0), cfg)
    assert got.tolist() == [True, False, False]


def test_gap_boundary() -> None:
    assert rules.gap_mask(
        arr(0, 0), arr(2 * DAY_S, 2 * DAY_S + 1), arr(2 * DAY_S, 2 * DAY_S)
    ).tolist() == [
        False,
        True,
    ]


def test_contract_active_and_median() -> None:
    assert rules.contract_active(5, ((0, 5), (5, 6)))
    assert not rules.contract_active(6, ((0, 5), (5, 6)))
    assert not rules.contract_active(1, ())
    assert rules.median_milli(arr(5, 1, 9, 7)) == 5  # lower median, as percentile_disc
    assert rules.median_milli(arr(3)) == 3
    with pytest.raises(ValueError, match="daily_milli"):
        rules.median_milli(arr())


# --- the rules inside validate_reads ---------------------------------------------------------


def test_rollover_flagged_on_the_accepted_read_rollback_rejected() -> None:
    state = {("E1", "1.8.1"): RegisterState(T0, 99_990_000, T0 - DAY_S)}
    v = validate_reads([rd(T0 + H, 5_000)], {"E1": meter()}, state, now=T0 + DAY_S)
    assert v.status == [ACCEPTED] and v.flags == [["rollover"]]
    assert [iv.quantity_milli for iv in v.intervals] == [15_000]
    v = validate_reads([rd(T0 + H, 50_000_000)], {"E1": meter()}, state, now=T0 + DAY_S)
    assert v.status == [REJECTED] and v.reason == ["register went backwards without a rollover"]


def test_multiplier_multiplies_the_advance() -> None:
    state = {("E1", "1.8.1"): RegisterState(T0, 1_000, T0)}
    v = validate_reads([rd(T0 + H, 1_500)], {"E1": meter(multiplier=200)}, state, now=T0 + H)
    assert [iv.quantity_milli for iv in v.intervals] == [500 * 200]


def test_future_reads_are_quarantined_not_sequenced() -> None:
    state = {("E1", "1.8.1"): RegisterState(T0, 1_000, T0)}
    reads = [rd(T0 + 2 * H, 3_000), rd(T0 + H, 2_000)]
    v = validate_reads(reads, {"E1": meter()}, state, now=T0 + H)
    assert v.status == [QUARANTINED, ACCEPTED]
    assert [(iv.start_at, iv.end_at) for iv in v.intervals] == [(T0, T0 + H)]
    assert v.new_state[("E1", "1.8.1")].last_read_at == T0 + H


def test_before_installation_and_after_removal_rejected() -> None:
    m = meter(installed_at=T0, removed_at=T0 + DAY_S)
    v = validate_reads([rd(T0 - 1, 1), rd(T0 + DAY_S + 1, 2)], {"E1": m}, {}, now=T0 + 9 * DAY_S)
    assert v.status == [REJECTED, REJECTED]
    assert v.reason == [
        "read_at is before the meter was installed",
        "read_at is after the meter was removed",
    ]


def test_demand_register_no_interval_no_rollover() -> None:
    state = {("E1", "1.6.0"): RegisterState(T0, 80_000)}
    reads = [
        rd(T0 + DAY_S, 12_500, register="1.6.0", unit="kW"),  # lower than before: fine
        rd(T0 + 2 * DAY_S, 12_500, register="1.6.0", unit="kW"),
        rd(T0 + 2 * DAY_S, 12_500, register="1.6.0", unit="kWh"),
    ]
    v = validate_reads(reads, {"E1": meter()}, state, now=T0 + 3 * DAY_S)
    assert v.status == [ACCEPTED, ACCEPTED, REJECTED]
    assert v.intervals == [] and v.flags[:2] == [[], []]
    assert v.new_state[("E1", "1.6.0")] == RegisterState(T0 + 2 * DAY_S, 12_500)


def test_meter_replacement_final_and_initial() -> None:
    old = meter(meter_id="E1", installed_at=T0 - 90 * DAY_S, removed_at=T0)
    new = meter(meter_id="E2", installed_at=T0, digits=6)
    state = {("E1", "1.8.1"): RegisterState(T0 - DAY_S, 40_000, T0 - 2 * DAY_S)}
    reads = [
        rd(T0, 43_000),  # final of the old meter, at its removal
        rd(T0, 7_000, meter_id="E2"),  # initial of the new one
        rd(T0 + DAY_S, 9_500, meter_id="E2"),
    ]
    v = validate_reads(reads, {"E1": old, "E2": new}, state, now=T0 + 2 * DAY_S)
    assert v.status == [ACCEPTED] * 3
    assert v.flags == [["final"], ["initial"], []]
    # (final old − last old) + (next new − initial new); no interval from 0 to 7 kWh
    assert [(iv.meter_id, iv.quantity_milli) for iv in v.intervals] == [
        ("E1", 3_000),
        ("E2", 2_500),
    ]


def test_reinstalled_meter_starts_afresh() -> None:
    m = meter(installed_at=T0)
    state = {("E1", "1.8.1"): RegisterState(T0 - 30 * DAY_S, 40_000, T0 - 40 * DAY_S)}
    v = validate_reads([rd(T0 + H, 41_000)], {"E1": m}, state, now=T0 + DAY_S)
    assert v.status == [ACCEPTED] and v.flags == [["initial"]] and v.intervals == []
    assert v.new_state[("E1", "1.8.1")] == RegisterState(T0 + H, 41_000, T0 + H)


def test_gap_depends_on_the_source() -> None:
    state = {("E1", "1.8.1"): RegisterState(T0, 1_000, T0)}
    three_days = T0 + 3 * DAY_S
    for source, flags in (("amr", ["gap"]), ("manual", [])):
        v = validate_reads([rd(three_days, 4_000, source=source)], {"E1": meter()}, state,
                           now=three_days)  # fmt: skip
        assert v.flags == [flags]
        assert [iv.quantity_milli for iv in v.intervals] == [3_000]  # still one interval


def test_zero_consumption_needs_the_run_and_an_active_contract() -> None:
    state = {("E1", "1.8.1"): RegisterState(T0 + 20 * DAY_S, 5_000, T0)}
    day30, day29 = T0 + 30 * DAY_S, T0 + 29 * DAY_S
    reads = [rd(day29, 5_000, source="manual"), rd(day30, 5_000, source="manual")]
    v = validate_reads(reads, {"E1": meter()}, state, now=day30)
    assert v.flags == [[], ["zero_consumption"]]
    assert v.new_state[("E1", "1.8.1")].value_since == T0  # the run goes on
    vacant = meter(contracts=())
    v = validate_reads([rd(day30, 5_000, source="manual")], {"E1": vacant}, state, now=day30)
    assert v.flags == [[]]
    v = validate_reads([rd(day30, 5_001, source="manual")], {"E1": meter()}, state, now=day30)
    assert v.flags == [[]] and v.new_state[("E1", "1.8.1")].value_since == day30


def test_old_state_without_value_since_counts_from_its_last_read() -> None:
    state = {("E1", "1.8.1"): RegisterState(T0, 5_000)}
    v = validate_reads([rd(T0 + 31 * DAY_S, 5_000)], {"E1": meter()}, state, now=T0 + 40 * DAY_S)
    assert v.flags == [["gap", "zero_consumption"]]


# --- spike with history (validate_batch) -----------------------------------------------------


class Loader:
    def __init__(self, history: dict[HistoryKey, tuple[int, int]]) -> None:
        self.history = history
        self.calls: list[dict[HistoryKey, int]] = []

    def __call__(self, keys: Mapping[HistoryKey, int]) -> dict[HistoryKey, tuple[int, int]]:
        self.calls.append(dict(keys))
        return {k: v for k, v in self.history.items() if k in keys}


SPIKY = [
    rd(T0 + DAY_S, 201_000, source="self"),
    rd(T0 + 2 * DAY_S, 209_000, source="self"),
    rd(T0 + 3 * DAY_S, 215_000, source="self"),
]
STATE = {("E1", "1.8.1"): RegisterState(T0, 1_000, T0)}


def test_spike_flagged_and_history_asked_once_for_candidates_only() -> None:
    load = Loader({("MP1", "electricity", "1.8.1"): (8_000, 60)})
    v = validate_batch(SPIKY, {"E1": meter()}, STATE, T0 + 4 * DAY_S, load)
    assert v.status == [ACCEPTED] * 3
    assert v.flags == [["spike"], [], []]  # 200 kWh in a day against a median of 8
    assert load.calls == [{("MP1", "electricity", "1.8.1"): day_index(date(2026, 3, 1))}]


def test_no_history_no_spike_and_small_advances_load_nothing() -> None:
    load = Loader({})
    v = validate_batch(SPIKY, {"E1": meter()}, STATE, T0 + 4 * DAY_S, load)
    assert v.flags == [[], [], []]
    load = Loader({})
    state = {("E1", "1.8.1"): RegisterState(T0 + DAY_S, 201_000)}
    validate_batch(SPIKY[1:], {"E1": meter()}, state, T0 + 4 * DAY_S, load)
    assert load.calls == []  # 8 and 6 kWh a day cannot be a spike (floor 1 kWh × 10)


def test_self_read_spike_rejected_and_the_next_read_sequenced_without_it() -> None:
    load = Loader({("MP1", "electricity", "1.8.1"): (8_000, 60)})
    v = validate_batch(SPIKY, {"E1": meter()}, STATE, T0 + 4 * DAY_S, load, reject_spikes=True)
    assert v.status == [REJECTED, REJECTED, ACCEPTED]
    assert v.reason[0] == (
        "spike: the advance of 200.000 kWh per day is more than 10 × the usual daily "
        "consumption (8.000 kWh, median of the last 60 days); check the value"
    )
    assert (v.reason[1] or "").startswith("spike: the advance of 104.000 kWh per day")
    assert [(iv.start_at, iv.quantity_milli) for iv in v.intervals] == [(T0, 214_000)]
    assert v.flags[2] == []  # 71.3 kWh a day: not above 80
