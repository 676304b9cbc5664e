"""The pure side of operator read editing: value checks, the re-flow plan, the daily difference."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path

import pytest

from rating.calendar import LOCAL_TZ, day_index
from rating.catalog import Catalog
from stream.read_edits import (
    ReadEditConflict,
    ReadEditError,
    StoredRead,
    check_reason,
    parse_value,
    plan_reflow,
    price_reflow,
)
from stream.vee import ContractSpan, Interval, MeterInfo, RegisterState

CATALOG = Catalog.from_documents(
    json.loads((Path(__file__).resolve().parents[2] / "app/demo/catalog.json").read_text())
)
EL_HH = (ContractSpan("C1", "EL-HH", day_index(date(2025, 1, 1)), day_index(date(2030, 1, 1))),)


def meter(register: str = "8.0", digits: int = 5, multiplier: int = 1) -> MeterInfo:
    service = "water" if register == "8.0" else "electricity"
    contracts = () if service == "water" else EL_HH
    return MeterInfo("M1", service, digits, multiplier, (register,), "MP1", 0, None, contracts)


def at(d: int, h: int) -> int:
    return int(datetime(2026, 3, d, h, tzinfo=LOCAL_TZ).timestamp())


T0, T1, T2 = at(10, 6), at(10, 7), at(10, 8)  # Tuesday 10 March 2026, winter time
PREV, READ, NEXT = StoredRead(T0, 100_000), StoredRead(T1, 150_000), StoredRead(T2, 160_000)
BEFORE = Interval("M1", "8.0", T0, T1, 50_000)
AFTER = Interval("M1", "8.0", T1, T2, 10_000)


def test_parse_value_and_reason_name_the_field() -> None:
    assert parse_value("1234.567", 5) == 1_234_567
    assert parse_value(" 12 ", 5) == 12_000
    assert parse_value(7, 5) == 7_000
    for bad, why in [("1.2345", "3 decimals"), ("abc", "not a number"), (-1, "negative"),
                     (True, "number or a decimal string"), (None, "number or a decimal string"),
                     ("100000", "5 integer digits"), ("nan", "finite")]:  # fmt: skip
        with pytest.raises(ReadEditError, match=f"^value: .*{why}"):
            parse_value(bad, 5)
    assert check_reason("  typo on the card ") == "typo on the card"
    for bad in ("", "  x ", None, "x" * 501):
        with pytest.raises(ReadEditError, match="^reason: "):
            check_reason(bad)


def test_correcting_a_middle_read_moves_consumption_between_its_two_intervals() -> None:
    plan = plan_reflow(meter(), "8.0", READ, 110_000, prev=PREV, nxt=NEXT,
                       old_before=BEFORE, old_after=AFTER)  # fmt: skip
    assert plan.old == (BEFORE, AFTER)
    assert [(iv.start_at, iv.end_at, iv.quantity_milli) for iv in plan.new] == [
        (T0, T1, 10_000), (T1, T2, 50_000)]  # fmt: skip
    assert sum(iv.quantity_milli for iv in plan.new) == 60_000  # the register advance
    assert not plan.state_changed


def test_correcting_the_last_read_moves_the_state() -> None:
    plan = plan_reflow(meter(), "8.0", NEXT, 170_000, prev=READ, nxt=None,
                       old_before=AFTER, old_after=None)  # fmt: skip
    assert [(iv.start_at, iv.quantity_milli) for iv in plan.new] == [(T1, 20_000)]
    assert plan.state_changed and plan.state == RegisterState(T2, 170_000)


def test_removing_reads_merges_or_drops_intervals_and_rewinds_the_state() -> None:
    middle = plan_reflow(meter(), "8.0", READ, None, prev=PREV, nxt=NEXT,
                         old_before=BEFORE, old_after=AFTER)  # fmt: skip
    assert [(iv.start_at, iv.end_at, iv.quantity_milli) for iv in middle.new] == [
        (T0, T2, 60_000)]  # fmt: skip
    assert not middle.state_changed
    last = plan_reflow(meter(), "8.0", NEXT, None, prev=READ, nxt=None,
                       old_before=AFTER, old_after=None)  # fmt: skip
    assert last.old == (AFTER,) and last.new == ()
    assert last.state_changed and last.state == RegisterState(T1, 150_000)
    first = plan_reflow(meter(), "8.0", PREV, None, prev=None, nxt=READ,
                        old_before=None, old_after=BEFORE)  # fmt: skip
    assert first.old == (BEFORE,) and first.new == () and not first.state_changed
    only = plan_reflow(meter(), "8.0", PREV, None, prev=None, nxt=None,
                       old_before=None, old_after=None)  # fmt: skip
    assert only.state_changed and only.state is None and only.new == ()


def test_a_side_the_stream_never_linked_is_left_alone() -> None:
    plan = plan_reflow(meter(), "8.0", READ, 120_000, prev=PREV, nxt=NEXT,
                       old_before=None, old_after=AFTER)  # fmt: skip
    assert [(iv.start_at, iv.quantity_milli) for iv in plan.new] == [(T1, 40_000)]


def test_a_value_that_makes_the_register_go_backwards_is_refused() -> None:
    with pytest.raises(ReadEditError, match="^value: .*backwards from the previous read"):
        plan_reflow(meter(), "8.0", READ, 99_000, prev=PREV, nxt=NEXT,
                    old_before=BEFORE, old_after=AFTER)  # fmt: skip
    with pytest.raises(ReadEditError, match="^value: .*backwards to the next read"):
        plan_reflow(meter(), "8.0", READ, 161_000, prev=PREV, nxt=NEXT,
                    old_before=BEFORE, old_after=AFTER)  # fmt: skip


def test_rollover_and_multiplier() -> None:
    m = meter(digits=3, multiplier=40)  # a 3-digit register wraps at 1000.000
    prev, read, nxt = StoredRead(T0, 995_000), StoredRead(T1, 998_000), StoredRead(T2, 5_000)
    old_b = Interval("M1", "8.0", T0, T1, 3_000 * 40)
    old_a = Interval("M1", "8.0", T1, T2, 7_000 * 40)
    fixed = plan_reflow(m, "8.0", read, 999_000, prev=prev, nxt=nxt, old_before=old_b,
                        old_after=old_a)  # fmt: skip
    assert [iv.quantity_milli for iv in fixed.new] == [4_000 * 40, 6_000 * 40]
    merged = plan_reflow(m, "8.0", read, None, prev=prev, nxt=nxt, old_before=old_b,
                         old_after=old_a)  # fmt: skip
    assert [iv.quantity_milli for iv in merged.new] == [10_000 * 40]
    with pytest.raises(ReadEditConflict, match="backwards"):
        plan_reflow(m, "8.0", StoredRead(T1, 500_000), None, prev=StoredRead(T0, 600_000),
                    nxt=StoredRead(T2, 100_000), old_before=old_b, old_after=old_a)  # fmt: skip


def test_profile_correction_moves_kwh_between_the_bands_by_hand() -> None:
    """Tuesday 10 March 2026 (winter, higher season), households: 06–07 is MT, 07–08 VT.
    Reads 100.000 at 06:00, 101.000 at 07:00, 103.000 at 08:00; 07:00 corrected to 101.500:
    +0.5 kWh MT × 0.0789, −0.5 kWh VT × 0.1578."""
    m = meter("1.8.0", digits=6)
    prev, read, nxt = StoredRead(T0, 100_000), StoredRead(T1, 101_000), StoredRead(T2, 103_000)
    old_b = Interval("M1", "1.8.0", T0, T1, 1_000)
    old_a = Interval("M1", "1.8.0", T1, T2, 2_000)
    plan = plan_reflow(m, "1.8.0", read, 101_500, prev=prev, nxt=nxt, old_before=old_b,
                       old_after=old_a)  # fmt: skip
    priced = price_reflow(plan, m, CATALOG)
    d = day_index(date(2026, 3, 10))
    assert priced.daily_changes == [
        ("MP1", "electricity", "1.8.1", d, -500, -500 * 157_800, 0),
        ("MP1", "electricity", "1.8.2", d, 500, 500 * 78_900, 0),
    ]
    assert priced.after is not None
    rows = priced.after.interval_rows()  # the raw intervals stay on 1.8.0
    assert [(r[1], r[8], r[10]) for r in rows] == [
        ("1.8.0", 1_500, 1_500 * 78_900), ("1.8.0", 1_500, 1_500 * 157_800)]  # fmt: skip
    # the inverse edit gives exactly the opposite difference
    back = plan_reflow(m, "1.8.0", StoredRead(T1, 101_500), 101_000, prev=prev, nxt=nxt,
                       old_before=plan.new[0], old_after=plan.new[1])  # fmt: skip
    inverse = price_reflow(back, m, CATALOG).daily_changes
    assert [(*c[:4], -c[4], -c[5], -c[6]) for c in inverse] == priced.daily_changes


def test_removing_a_read_at_midnight_shares_the_merged_interval_by_seconds() -> None:
    """A removed read at local midnight: the merged interval (3 kWh over 23:00–01:00) is
    split at midnight again, 1.5 / 1.5 kWh, where the two reads had put 1 / 2."""
    m = meter("1.8.0", digits=6)
    prev, read, nxt = (StoredRead(at(12, 23), 0), StoredRead(at(13, 0), 1_000),
                       StoredRead(at(13, 1), 3_000))  # fmt: skip
    old_b = Interval("M1", "1.8.0", prev.read_at, read.read_at, 1_000)
    old_a = Interval("M1", "1.8.0", read.read_at, nxt.read_at, 2_000)
    plan = plan_reflow(m, "1.8.0", read, None, prev=prev, nxt=nxt, old_before=old_b,
                       old_after=old_a)  # fmt: skip
    priced = price_reflow(plan, m, CATALOG)
    assert [(c[2], c[3], c[4], c[6]) for c in priced.daily_changes] == [
        ("1.8.2", day_index(date(2026, 3, 12)), 500, 0),
        ("1.8.2", day_index(date(2026, 3, 13)), -500, 0),
    ]
