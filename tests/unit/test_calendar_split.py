from datetime import UTC, date, datetime

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from rating.calendar import (
    day_from_index,
    is_higher_season,
    local_day_of,
    local_midnight_epoch,
    month_bounds,
    previous_period,
)
from rating.split import split_at_local_midnight


def ts(*a: int) -> int:
    return int(datetime(*a, tzinfo=UTC).timestamp())


def test_local_midnight_follows_the_clock_change() -> None:
    # winter: local midnight is 23:00 UTC the day before; summer: 22:00 UTC
    assert local_midnight_epoch(date(2026, 3, 1)) == ts(2026, 2, 28, 23)
    assert local_midnight_epoch(date(2026, 7, 1)) == ts(2026, 6, 30, 22)


def test_instant_at_midnight_belongs_to_the_new_day() -> None:
    days = local_day_of(np.array([ts(2026, 2, 28, 23), ts(2026, 2, 28, 22, 59, 59)]))
    assert [day_from_index(d) for d in days] == [date(2026, 3, 1), date(2026, 2, 28)]


def test_periods_and_seasons() -> None:
    assert month_bounds("2026-12") == (date(2026, 12, 1), date(2027, 1, 1))
    assert previous_period("2026-01") == "2025-12"
    assert is_higher_season(date(2026, 3, 31)) and not is_higher_season(date(2026, 4, 1))
    assert is_higher_season(date(2026, 10, 1)) and not is_higher_season(date(2026, 9, 30))


def test_spring_forward_day_has_23_hours_of_share() -> None:
    start, end = ts(2026, 3, 28, 23), ts(2026, 3, 30, 22)  # local 29 Mar 00:00 → 31 Mar 00:00
    p = split_at_local_midnight(np.array([start]), np.array([end]), np.array([47000]))
    assert [day_from_index(d) for d in p.day] == [date(2026, 3, 29), date(2026, 3, 30)]
    assert p.quantity_milli.tolist() == [23000, 24000]


@settings(max_examples=300)
@given(
    st.lists(
        st.tuples(
            st.integers(ts(2024, 1, 1), ts(2027, 1, 1)),
            st.integers(1, 90 * 86400),
            st.integers(0, 10**12),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_splitting_never_changes_the_total(rows: list[tuple[int, int, int]]) -> None:
    start = np.array([r[0] for r in rows], dtype=np.int64)
    end = start + np.array([r[1] for r in rows], dtype=np.int64)
    qty = np.array([r[2] for r in rows], dtype=np.int64)
    p = split_at_local_midnight(start, end, qty)
    totals = np.zeros(len(rows), dtype=np.int64)
    np.add.at(totals, p.source, p.quantity_milli)
    assert totals.tolist() == qty.tolist()
    assert (p.quantity_milli >= 0).all()
    assert (p.end_at > p.start_at).all()
    # pieces tile each interval without gaps or overlap
    for i in range(len(rows)):
        mine = p.source == i
        assert p.start_at[mine][0] == start[i] and p.end_at[mine][-1] == end[i]
        assert (p.start_at[mine][1:] == p.end_at[mine][:-1]).all()
