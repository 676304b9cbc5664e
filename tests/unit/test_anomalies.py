"""The pure anomaly rules, one by one, at their thresholds."""

from __future__ import annotations

from datetime import date, datetime

import numpy as np
import pytest

from rating.calendar import LOCAL_TZ, day_index
from schemas.meter_reads import MeterRead
from stream import anomalies as r
from stream.vee import Interval, MeterInfo

M = r.MISSING
NIGHT = day_index(date(2026, 3, 10))


def ts(y: int, mo: int, d: int, h: int, mi: int = 0) -> int:
    return int(datetime(y, mo, d, h, mi, tzinfo=LOCAL_TZ).timestamp())


def series(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def hourly(day: date, litres_per_hour: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    start = np.array([ts(day.year, day.month, day.day, h) for h in range(24)], dtype=np.int64)
    return start, start + 3600, np.array(litres_per_hour, dtype=np.int64)


def test_night_window_is_local_wall_clock_in_winter_and_summer() -> None:
    assert r.night_window(NIGHT) == (ts(2026, 3, 10, 2), ts(2026, 3, 10, 4))
    july = day_index(date(2026, 7, 1))
    a, b = r.night_window(july)
    assert (a, b) == (ts(2026, 7, 1, 2), ts(2026, 7, 1, 4))
    assert b - a == 7200
    # 02:00 of the night window is 00:00 UTC in summer, 01:00 UTC in winter
    assert a % 86400 == 0 and r.night_window(NIGHT)[0] % 86400 == 3600


def test_completed_nights_only_for_intervals_reaching_the_window_end() -> None:
    start = np.array([ts(2026, 3, 10, 3), ts(2026, 3, 10, 4), ts(2026, 3, 9, 0)], dtype=np.int64)
    end = np.array([ts(2026, 3, 10, 4), ts(2026, 3, 10, 5), ts(2026, 3, 11, 0)], dtype=np.int64)
    assert r.completed_nights(start, end).tolist() == [NIGHT, -1, NIGHT]


def test_night_minimum_flow_in_litres_per_hour() -> None:
    flows = [30] * 24
    flows[2], flows[3] = 12, 7  # 02–03 and 03–04 local
    start, end, qty = hourly(date(2026, 3, 10), flows)
    got = r.night_min_flows(start, end, qty, [NIGHT, NIGHT + 1])
    assert got[0] == 7.0
    assert np.isnan(got[1])  # no data that night


def test_long_intervals_do_not_tell_a_night_minimum() -> None:
    start = np.array([ts(2026, 3, 10, 0)], dtype=np.int64)
    end = np.array([ts(2026, 3, 11, 0)], dtype=np.int64)
    assert np.isnan(r.night_min_flows(start, end, np.array([240_000]), [NIGHT])[0])
    quarter = np.array([ts(2026, 3, 10, 2, 15)], dtype=np.int64)
    got = r.night_min_flows(quarter, quarter + 900, np.array([3]), [NIGHT])
    assert got[0] == pytest.approx(12.0)  # 3 l in 15 min


def test_leak_needs_three_wet_nights_running() -> None:
    wet, dry, nan = 6.0, 5.0, float("nan")
    assert r.leak_decision(np.array([wet, wet, wet])) == r.OPEN
    assert r.leak_decision(np.array([wet, wet])) is None
    assert r.leak_decision(np.array([nan, wet, wet])) is None
    assert r.leak_decision(np.array([wet, dry, wet])) is None
    assert r.leak_decision(np.array([wet, wet, dry])) == r.CLOSE  # at the limit is dry
    assert r.leak_decision(np.array([wet, wet, nan])) is None
    assert r.leak_decision(np.array([], dtype=np.float64)) is None
    strict = r.Thresholds(leak_flow_l_per_h=10.0, leak_nights=2)
    assert r.leak_decision(np.array([11.0, 12.0]), strict) == r.OPEN
    assert r.leak_decision(np.array([11.0, 9.0]), strict) == r.CLOSE


def test_read_flags_keeps_known_strings_only() -> None:
    assert r.read_flags({"flags": ["reverse", "tamper", "x", 3]}) == {"reverse", "tamper"}
    assert r.read_flags({"flags": "tamper"}) == frozenset()
    assert r.read_flags({}) == frozenset()
    assert r.read_flags("not a dict") == frozenset()


def test_reverse_register_advance() -> None:
    assert r.reverse_register_decision("2.8.0", 1) == r.OPEN
    assert r.reverse_register_decision("2.8.0", 0) == r.CLOSE
    assert r.reverse_register_decision("1.8.1", 500) is None
    assert r.reverse_register_decision("2.8.0", 400, r.Thresholds(reverse_min_milli=500)) == r.CLOSE


def test_zero_drop_after_steady_use() -> None:
    steady = [9000, 11000, 10000] * 5  # 15 days
    assert r.zero_drop_decision(series(*steady, 0, 0, 0)) == r.OPEN
    assert r.zero_drop_decision(series(*steady, 0, 0)) is None  # two days only
    assert r.zero_drop_decision(series(*steady, 0, M, 0)) is None  # a gap is not a zero
    assert r.zero_drop_decision(series(*steady, 0, 0, 0, 0)) == r.OPEN
    assert r.zero_drop_decision(series(*steady, 0, 0, 0, 5)) == r.CLOSE
    assert r.zero_drop_decision(series(*steady, M)) is None


def test_zero_drop_needs_a_steady_baseline() -> None:
    patchy = [0, 0, 10000, 0, 0, 12000, 0] * 2  # a holiday house: zero days are normal
    assert r.zero_drop_decision(series(*patchy, 0, 0, 0)) is None
    short = [M] * 10 + [10000] * 4  # only four days of history
    assert r.zero_drop_decision(series(*short, 0, 0, 0)) is None
    mostly = [10000] * 12 + [0] * 2  # 12 of 14 active = 85 % ≥ 80 %
    assert r.zero_drop_decision(series(*mostly, 0, 0, 0)) == r.OPEN


def test_high_consumption_against_the_median() -> None:
    history = [10000] * 20 + [M] * 10
    assert r.high_consumption_decision(series(*history, 30001)) == r.OPEN
    assert r.high_consumption_decision(series(*history, 30000)) == r.CLOSE  # exactly 3×
    assert r.high_consumption_decision(series(*history, M)) is None
    few = [M] * 24 + [10000] * 6  # six days of history < seven
    assert r.high_consumption_decision(series(*few, 90000)) is None
    small = [100] * 30  # 0.1 m³ a day: 0.9 m³ is above 3× but below the 1-unit floor
    assert r.high_consumption_decision(series(*small, 900)) == r.CLOSE
    dead = [0] * 30
    assert r.high_consumption_decision(series(*dead, 50000)) is None
    k2 = r.Thresholds(high_factor=2.0)
    assert r.high_consumption_decision(series(*history, 20001), k2) == r.OPEN
    assert r.median_of_history(series(*history, 1)) == 10000.0


def test_silent_meters() -> None:
    now = 1_000_000
    last = np.array([now - 48 * 3600, now - 48 * 3600 - 1, now], dtype=np.int64)
    assert r.silent(last, now).tolist() == [False, True, False]
    assert r.silent(last, now, r.Thresholds(silent_hours=1)).tolist() == [True, True, False]


def test_merge_prefers_open() -> None:
    assert r.merge([r.CLOSE, None, r.OPEN]) == r.OPEN
    assert r.merge([None, r.CLOSE]) == r.CLOSE
    assert r.merge([None]) is None


def meter(meter_id: str, service: str) -> MeterInfo:
    return MeterInfo(meter_id, service, 6, 1, ("1.8.1", "2.8.0"), "MP1", 0, None)


def test_flag_findings_only_for_electricity_meters() -> None:
    meters = {"E1": meter("E1", "electricity"), "W1": meter("W1", "water")}
    at = ts(2026, 3, 1, 12)
    reads = [
        (MeterRead("E1", "1.8.1", at, 1000, "kWh", "amr"), {"flags": ["tamper", "reverse"]}),
        (MeterRead("W1", "8.0", at, 1000, "m3", "amr"), {"flags": ["tamper"]}),
        (MeterRead("E1", "1.8.1", at, 1000, "kWh", "amr"), {}),
    ]
    found = r.flag_findings(reads, meters)
    assert [(f.meter_id, f.kind, f.decision, f.metering_point_id) for f in found] == [
        ("E1", "reverse_energy", r.OPEN, "MP1"),
        ("E1", "tamper", r.OPEN, "MP1"),
    ]
    assert found[0].detail == {
        "text": "meter reported 'reverse'",
        "read_at": "2026-03-01T11:00:00Z",
    }


def test_reverse_register_findings() -> None:
    meters = {"E1": meter("E1", "electricity")}
    ivs = [Interval("E1", "2.8.0", 0, 3600, 1500), Interval("E1", "2.8.0", 3600, 7200, 0),
           Interval("E1", "1.8.1", 0, 3600, 9000)]  # fmt: skip
    found = r.reverse_register_findings(ivs, meters, r.DEFAULT)
    assert [(f.decision, f.detail["text"]) for f in found] == [
        (r.OPEN, "export register 2.8.0 advanced 1.5 kWh"),
        (r.CLOSE, "export register 2.8.0 still"),
    ]
