"""Properties of the rating core, checked on random input with hypothesis."""

import copy
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from rating.calendar import local_day_of
from rating.catalog import Catalog
from rating.holidays import HolidayCalendar, brcko_holidays
from rating.reference_rater import reference_rate
from rating.tiers import (
    graduated_amount_nano,
    graduated_amounts_nano,
    graduated_lines,
    parse_tiers,
)
from rating.tou import rate_profile, split_at_band_changes, tou_band

DOCS = json.loads((Path(__file__).parents[2] / "app" / "demo" / "catalog.json").read_text())
_NEW_HH = copy.deepcopy(next(d for d in DOCS if d["tariff_code"] == "EL-HH"))
_NEW_HH["valid_from"] = "2026-07-01"  # a price change inside the random range
for _comp in _NEW_HH["components"]:
    if _comp["kind"] == "energy":
        _comp["price"] = str(Decimal(_comp["price"]) + Decimal("0.0111"))
CATALOG = Catalog.from_documents([*DOCS, _NEW_HH])
TARIFFS = ["EL-HH", "EL-OP", "EL-JR", "EL-NONE"]  # EL-NONE is not in the catalog
HOLIDAYS = brcko_holidays(range(2024, 2028))
CAL = HolidayCalendar.of(HOLIDAYS)
DAYS = {h.day for h in HOLIDAYS}
T0, T1 = (int(datetime(y, 1, 1, tzinfo=UTC).timestamp()) for y in (2025, 2027))

intervals = st.lists(
    st.tuples(
        st.integers(T0, T1),
        st.integers(1, 3 * 86400) | st.sampled_from([900, 3600]),
        st.integers(0, 10**9),
        st.integers(-1, len(TARIFFS) - 1),
    ),
    min_size=1,
    max_size=25,
)


Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def arrays(rows: list[tuple[int, int, int, int]]) -> Arrays:
    start = np.array([r[0] for r in rows], dtype=np.int64)
    end = start + np.array([r[1] for r in rows], dtype=np.int64)
    qty = np.array([r[2] for r in rows], dtype=np.int64)
    tariff = np.array([r[3] for r in rows], dtype=np.int64)
    return start, end, qty, tariff


@settings(max_examples=200, deadline=None)
@given(intervals, st.booleans())
def test_vectorized_engine_agrees_with_the_reference(rows: list, at_midnight: bool) -> None:
    start, end, qty, tariff = arrays(rows)
    got = rate_profile(CATALOG, start, end, qty, tariff, TARIFFS, CAL, at_midnight=at_midnight)
    ref_rows = [
        (int(s), int(e), int(q), TARIFFS[t] if t >= 0 else None)
        for s, e, q, t in zip(start, end, qty, tariff, strict=True)
    ]
    ref = reference_rate(CATALOG, ref_rows, DAYS, at_midnight=at_midnight)
    p = got.pieces
    assert p.source.tolist() == [r.source for r in ref]
    assert p.start_at.tolist() == [r.start_at for r in ref]
    assert p.end_at.tolist() == [r.end_at for r in ref]
    assert p.band.tolist() == [r.band for r in ref]
    assert p.day.tolist() == [r.day for r in ref]
    assert p.quantity_milli.tolist() == [r.quantity_milli for r in ref]
    assert got.price_micro.tolist() == [r.price_micro for r in ref]
    assert got.amount_nano.tolist() == [r.amount_nano for r in ref]


@settings(max_examples=200, deadline=None)
@given(intervals, st.sampled_from(["households", "other"]), st.booleans())
def test_splitting_anywhere_never_changes_the_total(
    rows: list, scheme: str, at_midnight: bool
) -> None:
    start, end, qty, _ = arrays(rows)
    p = split_at_band_changes(start, end, qty, scheme, CAL, at_midnight=at_midnight)
    totals = np.zeros(len(rows), dtype=np.int64)
    np.add.at(totals, p.source, p.quantity_milli)
    assert totals.tolist() == qty.tolist()
    assert (p.quantity_milli >= 0).all() and (p.end_at > p.start_at).all()
    # the pieces tile each interval, and inside a piece the band (and day) does not change
    for i in range(len(rows)):
        mine = p.source == i
        assert p.start_at[mine][0] == start[i] and p.end_at[mine][-1] == end[i]
        assert (p.start_at[mine][1:] == p.end_at[mine][:-1]).all()
    assert (tou_band(p.end_at - 1, scheme, CAL) == p.band).all()
    if at_midnight:
        assert (local_day_of(p.end_at - 1) == p.day).all()


@settings(max_examples=100, deadline=None)
@given(intervals, intervals)
def test_rating_is_additive_over_disjoint_batches(a: list, b: list) -> None:
    """No interval's rating depends on another: a batch rates as the sum of its parts."""
    whole = rate_profile(CATALOG, *arrays(a + b), TARIFFS, CAL)
    first = rate_profile(CATALOG, *arrays(a), TARIFFS, CAL)
    second = rate_profile(CATALOG, *arrays(b), TARIFFS, CAL)
    assert whole.amount_nano.tolist() == first.amount_nano.tolist() + second.amount_nano.tolist()
    assert int(whole.amount_nano.sum()) == int(first.amount_nano.sum() + second.amount_nano.sum())


@settings(max_examples=200, deadline=None)
@given(
    st.integers(T0 // 3600, T1 // 3600),
    st.integers(1, 3599),
    st.integers(0, 10**9),
    st.integers(0, 10**9),
    st.integers(0, 2),
)
def test_linear_price_is_additive_when_an_interval_is_cut_in_two(
    hour: int, cut: int, q1: int, q2: int, tariff: int
) -> None:
    """Inside one band and day (a whole UTC hour), rating [s, t) and [t, e) separately
    gives exactly the amount of [s, e) with the summed quantity."""
    s = hour * 3600
    parts = rate_profile(
        CATALOG, np.array([s, s + cut]), np.array([s + cut, s + 3600]), np.array([q1, q2]),
        np.array([tariff, tariff]), TARIFFS, CAL,
    )  # fmt: skip
    whole = rate_profile(
        CATALOG, np.array([s]), np.array([s + 3600]), np.array([q1 + q2]), np.array([tariff]),
        TARIFFS, CAL,
    )  # fmt: skip
    assert int(parts.amount_nano.sum()) == int(whole.amount_nano.sum())


tier_lists = st.lists(
    st.tuples(st.integers(1, 10**6), st.integers(0, 5 * 10**6)), min_size=1, max_size=5
).map(
    lambda xs: parse_tiers(
        [
            {"up_to": str(sum(w for w, _ in xs[: i + 1])), "price": f"{p / 10**6:.6f}"}
            for i, (_, p) in enumerate(xs[:-1])
        ]
        + [{"up_to": None, "price": f"{xs[-1][1] / 10**6:.6f}"}]
    )
)


@settings(max_examples=300)
@given(tier_lists, st.integers(0, 10**10), st.integers(0, 10**10))
def test_graduated_tiers_are_monotone(tiers: tuple, q1: int, q2: int) -> None:
    lo, hi = sorted((q1, q2))
    assert graduated_amount_nano(lo, tiers) <= graduated_amount_nano(hi, tiers)
    fen = [sum(ln.amount_fen for ln in graduated_lines(q, tiers)) for q in (lo, hi)]
    assert fen[0] <= fen[1]
    assert graduated_amounts_nano(np.array([lo, hi]), tiers).tolist() == [
        graduated_amount_nano(lo, tiers),
        graduated_amount_nano(hi, tiers),
    ]


@settings(max_examples=300)
@given(tier_lists)
def test_graduated_tiers_are_continuous_at_the_edges(tiers: tuple) -> None:
    """One thousandth more across an edge costs exactly the next tier's price: no jump."""
    for i, tier in enumerate(tiers[:-1]):
        edge = tier.up_to_milli
        at = graduated_amount_nano(edge, tiers)
        assert at - graduated_amount_nano(edge - 1, tiers) == tier.price_micro
        assert graduated_amount_nano(edge + 1, tiers) - at == tiers[i + 1].price_micro
