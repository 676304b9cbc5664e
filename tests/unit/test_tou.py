import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rating import RatingError
from rating.calendar import LOCAL_TZ, day_from_index, day_index, local_day_of
from rating.catalog import Catalog
from rating.holidays import (
    HolidayCalendar,
    HolidayError,
    brcko_holidays,
    easter_gregorian,
    easter_orthodox,
    parse_holidays,
)
from rating.reference_rater import band_at, reference_rate
from rating.tou import BAND_REGISTERS, MT, SINGLE, VT, split_at_band_changes, tou_band
from stream.rate import default_holidays, rate_intervals
from stream.vee import ContractSpan, Interval, MeterInfo

HOLIDAYS = brcko_holidays(range(2024, 2028))
CAL = HolidayCalendar.of(HOLIDAYS)
NONE = HolidayCalendar.of([])


def local(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> int:
    return int(datetime(y, mo, d, h, mi, s, tzinfo=LOCAL_TZ).timestamp())


def ts(y: int, mo: int, d: int, h: int = 0) -> int:
    return int(datetime(y, mo, d, h, tzinfo=UTC).timestamp())


def bands_by_local_hour(day: date, scheme: str) -> list[int]:
    """Band at hh:30 local time for every hour of a local day (23 or 25 on change days)."""
    start = int(datetime(day.year, day.month, day.day, tzinfo=LOCAL_TZ).timestamp())
    end = int(datetime.combine(day + timedelta(days=1), datetime.min.time(), LOCAL_TZ).timestamp())
    return tou_band(np.arange(start + 1800, end, 3600), scheme, CAL).tolist()


def windows(bands: list[int]) -> list[int]:
    return [h for h, b in enumerate(bands) if b == VT]


def test_households_winter_and_summer_local_windows() -> None:
    # Friday 27 March 2026 (winter time): VT 07–13 and 16–22 local
    assert windows(bands_by_local_hour(date(2026, 3, 27), "households")) == [
        *range(7, 13), *range(16, 22)]  # fmt: skip
    # Monday 30 March 2026 (summer time): VT 08–14 and 17–23 local
    assert windows(bands_by_local_hour(date(2026, 3, 30), "households")) == [
        *range(8, 14), *range(17, 23)]  # fmt: skip
    # Monday 26 October 2026: winter time again
    assert windows(bands_by_local_hour(date(2026, 10, 26), "households")) == [
        *range(7, 13), *range(16, 22)]  # fmt: skip


def test_other_categories_windows_around_both_changes() -> None:
    assert windows(bands_by_local_hour(date(2026, 3, 28), "other")) == list(range(6, 22))
    assert windows(bands_by_local_hour(date(2026, 3, 30), "other")) == list(range(7, 23))
    assert windows(bands_by_local_hour(date(2026, 10, 24), "other")) == list(range(7, 23))
    assert windows(bands_by_local_hour(date(2026, 10, 27), "other")) == list(range(6, 22))


def test_change_sundays_are_mt_all_23_and_25_hours() -> None:
    spring = bands_by_local_hour(date(2026, 3, 29), "other")
    autumn = bands_by_local_hour(date(2026, 10, 25), "households")
    assert len(spring) == 23 and set(spring) == {MT}
    assert len(autumn) == 25 and set(autumn) == {MT}


def test_exact_instants_at_the_summer_window_edges() -> None:
    e = np.array([local(2026, 3, 30, 7, 59, 59), local(2026, 3, 30, 8),
                  local(2026, 3, 30, 22, 59, 59), local(2026, 3, 30, 23),
                  local(2026, 3, 31, 0, 30)])  # fmt: skip
    assert tou_band(e, "households", CAL).tolist() == [MT, VT, VT, MT, MT]


def test_holidays_are_mt_all_day_and_the_sunday_holiday_moves() -> None:
    # 8 March 2026 is a Sunday: Monday 9 March is the District holiday instead
    assert date(2026, 3, 9) in CAL
    assert set(bands_by_local_hour(date(2026, 3, 9), "other")) == {MT}
    assert set(bands_by_local_hour(date(2026, 5, 1), "households")) == {MT}  # Friday
    assert VT in bands_by_local_hour(date(2026, 3, 10), "other")
    # without the calendar the same Friday has VT hours
    e = np.array([local(2026, 5, 1, 10)])
    assert tou_band(e, "other", CAL).tolist() == [MT]
    assert tou_band(e, "other", NONE).tolist() == [VT]


def test_single_rate_scheme_has_no_band() -> None:
    e = np.array([local(2026, 5, 3, 10), local(2026, 5, 4, 10)])  # Sunday, Monday
    assert tou_band(e, "single", CAL).tolist() == [SINGLE, SINGLE]


@settings(max_examples=400)
@given(st.integers(ts(2024, 1, 1), ts(2027, 12, 31)), st.sampled_from(["households", "other"]))
def test_vectorized_band_matches_the_local_clock_reading(epoch: int, scheme: str) -> None:
    days = {h.day for h in HOLIDAYS}
    assert int(tou_band(np.array([epoch]), scheme, CAL)[0]) == band_at(epoch, scheme, days)


@settings(max_examples=60)
@given(
    st.integers(ts(2026, 3, 27), ts(2026, 4, 1)) | st.integers(ts(2026, 10, 23), ts(2026, 10, 28))
)
def test_every_second_of_an_hour_around_the_changes(epoch: int) -> None:
    e = epoch + np.arange(0, 3600, 7, dtype=np.int64)
    days = {h.day for h in HOLIDAYS}
    for scheme in ("households", "other"):
        got = tou_band(e, scheme, CAL).tolist()
        assert got == [band_at(int(x), scheme, days) for x in e.tolist()]


def test_split_a_summer_weekday_at_band_changes_and_midnight() -> None:
    start, end = local(2026, 3, 30, 0), local(2026, 3, 31, 1)  # 25 hours, 25 kWh
    p = split_at_band_changes(np.array([start]), np.array([end]), np.array([25_000]),
                              "households", CAL)  # fmt: skip
    edges = [datetime.fromtimestamp(x, LOCAL_TZ).hour for x in p.start_at.tolist()]
    assert edges == [0, 8, 14, 17, 23, 0]
    assert p.band.tolist() == [MT, VT, MT, VT, MT, MT]
    assert p.quantity_milli.tolist() == [8000, 6000, 3000, 6000, 1000, 1000]
    assert [day_from_index(d) for d in p.day] == [date(2026, 3, 30)] * 5 + [date(2026, 3, 31)]
    no_midnight = split_at_band_changes(
        np.array([start]), np.array([end]), np.array([25_000]), "households", CAL, at_midnight=False
    )
    assert len(no_midnight.band) == 5 and no_midnight.quantity_milli[-1] == 2000


def test_split_shares_by_seconds_with_cumulative_flooring() -> None:
    # 06:30–07:30 winter local on a Tuesday, VT from 07:00 (other): 30 min / 30 min
    start = local(2026, 1, 13, 5, 30)
    p = split_at_band_changes(np.array([start]), np.array([start + 3600]), np.array([1001]),
                              "other", CAL)  # fmt: skip
    assert p.band.tolist() == [MT, VT] and p.quantity_milli.tolist() == [500, 501]


def test_aligned_quarter_hours_are_not_split() -> None:
    start = local(2026, 3, 2) + 900 * np.arange(96 * 31, dtype=np.int64)
    p = split_at_band_changes(start, start + 900, np.full(len(start), 250), "households", CAL)
    assert (p.source == np.arange(len(start))).all() and (p.quantity_milli == 250).all()


def test_split_rejects_bad_input_naming_it() -> None:
    with pytest.raises(RatingError, match="end_at"):
        split_at_band_changes(np.array([10]), np.array([10]), np.array([1]), "other", CAL)
    with pytest.raises(RatingError, match="scheme"):
        split_at_band_changes(np.array([0]), np.array([10]), np.array([1]), "nights", CAL)
    with pytest.raises(RatingError, match="same length"):
        split_at_band_changes(np.array([0]), np.array([10, 20]), np.array([1]), "other", CAL)
    with pytest.raises(RatingError, match="scheme"):
        split_at_band_changes(np.array([0]), np.array([10]), np.array([1]), [7], CAL)


def test_easter_dates_of_both_calendars() -> None:
    assert [easter_gregorian(y) for y in range(2024, 2028)] == [
        date(2024, 3, 31),
        date(2025, 4, 20),
        date(2026, 4, 5),
        date(2027, 3, 28),
    ]
    assert [easter_orthodox(y) for y in range(2024, 2028)] == [
        date(2024, 5, 5),
        date(2025, 4, 20),
        date(2026, 4, 12),
        date(2027, 5, 2),
    ]


def test_default_list_marks_what_is_not_confirmed() -> None:
    by_day = {(h.day, h.basis): h for h in HOLIDAYS}
    assert by_day[(date(2026, 3, 8), "district_law")].confirmed
    assert not by_day[(date(2026, 3, 1), "state_law")].confirmed
    assert not by_day[(date(2026, 11, 25), "state_law")].confirmed
    assert not by_day[(date(2026, 3, 20), "religious")].confirmed  # Ramazanski bajram
    assert "nepotvrđen" in by_day[(date(2027, 3, 9), "religious")].name
    # 2 May 2027 is a Sunday: the Monday after becomes the holiday
    assert (date(2027, 5, 3), "district_law") in by_day
    confirmed_only = HolidayCalendar.of(h for h in HOLIDAYS if h.confirmed)
    assert date(2026, 3, 1) not in confirmed_only and date(2026, 1, 2) in confirmed_only


def test_parse_holidays_names_the_bad_field() -> None:
    ok = parse_holidays([{"date": "2026-08-15", "name": "Velika Gospa", "basis": "religious",
                          "confirmed": False}])  # fmt: skip
    assert ok[0].day == date(2026, 8, 15) and not ok[0].confirmed
    for doc, field in [
        ({"date": "2026-02-30", "name": "x"}, r"holidays\[0\]\.date"),
        ({"date": "2026-02-03"}, r"holidays\[0\]\.name"),
        ({"date": "2026-02-03", "name": "x", "basis": "city"}, r"holidays\[0\]\.basis"),
        ({"date": "2026-02-03", "name": "x", "confirmed": "yes"}, r"holidays\[0\]\.confirmed"),
    ]:
        with pytest.raises(HolidayError, match=field):
            parse_holidays([doc])
    with pytest.raises(HolidayError, match="must be a list"):
        parse_holidays({"date": "2026-01-01"})


# ---- the stream (stream.rate): 1.8.0 profile intervals rolled up as 1.8.1 / 1.8.2 -----------

DEMO = Catalog.from_documents(
    json.loads((Path(__file__).resolve().parents[2] / "app/demo/catalog.json").read_text())
)
CONFIRMED = {h.day for h in HOLIDAYS if h.confirmed}


def profile_meter(tariff: str, registers: tuple[str, ...] = ("1.8.0",)) -> MeterInfo:
    span = ContractSpan("C", tariff, day_index(date(2025, 1, 1)), day_index(date(2028, 1, 1)))
    return MeterInfo("P", "electricity", 6, 1, registers, "MP", 0, None, (span,))


@settings(max_examples=80, deadline=None)
@given(
    st.sampled_from(["EL-HH", "EL-OP", "EL-JR"]),
    st.lists(
        st.tuples(st.integers(local(2026, 3, 26), local(2026, 4, 2)), st.integers(1, 40 * 3600),
                  st.integers(0, 50_000_000)),
        min_size=1, max_size=12,
    ),
)  # fmt: skip
def test_stream_bands_agree_with_the_reference_rater(
    tariff: str, rows: list[tuple[int, int, int]]
) -> None:
    """Per interval the pieces add up exactly; an interval inside one local day is rated
    exactly like the per-row reference (1.8.1 = VT, 1.8.2 = MT, 1.8.0 = single rate)."""
    meter = profile_meter(tariff)
    intervals = [Interval("P", "1.8.0", s, s + d, q) for s, d, q in rows]
    rated = rate_intervals(intervals, {"P": meter}, DEMO)
    assert rated is not None
    p = rated.pieces
    sums = np.bincount(p.source, weights=p.quantity_milli, minlength=len(rows))
    assert sums.astype(np.int64).tolist() == [q for _, _, q in rows]
    assert (rated.amounts == p.quantity_milli * rated.prices).all()
    names = [rated.register_names[r] for r in rated.register_idx.tolist()]
    for k, (s, d, q) in enumerate(rows):
        if local_day_of(np.array([s]))[0] != local_day_of(np.array([s + d - 1]))[0]:
            continue
        ref = reference_rate(DEMO, [(s, s + d, q, tariff)], CONFIRMED)
        mine = np.flatnonzero(p.source == k).tolist()
        assert [(names[i], int(p.quantity_milli[i]), int(rated.prices[i])) for i in mine] == [
            (BAND_REGISTERS[r.band], r.quantity_milli, r.price_micro) for r in ref
        ]
    daily = rated.daily_rows(None)
    assert sum(int(r[4]) for r in daily) == sum(q for _, _, q in rows)  # type: ignore[call-overload]
    assert {r[2] for r in daily} <= ({"1.8.0"} if tariff == "EL-JR" else {"1.8.1", "1.8.2"})


def test_a_meter_with_its_own_band_registers_keeps_1_8_0_whole() -> None:
    meter = profile_meter("EL-HH", ("1.8.0", "1.8.1", "1.8.2"))
    day = [Interval("P", "1.8.0", local(2026, 3, 30, 0), local(2026, 3, 31, 0), 24_000)]
    rated = rate_intervals(day, {"P": meter}, DEMO)
    assert rated is not None
    assert [(r[2], r[4]) for r in rated.daily_rows(None)] == [("1.8.0", 24_000)]


def test_default_holidays_are_the_confirmed_district_days() -> None:
    cal = default_holidays()
    assert date(2026, 3, 9) in cal and date(2027, 5, 3) in cal  # both moved from a Sunday
    assert date(2026, 3, 1) not in cal and date(2026, 3, 20) not in cal  # unconfirmed
