from schemas.meter_reads import MeterRead
from stream.vee import (
    ACCEPTED,
    CHECK_HISTORY,
    DUPLICATE,
    QUARANTINED,
    REJECTED,
    MeterInfo,
    RegisterState,
    advance_milli,
    validate_reads,
)

METER = MeterInfo("E1", "electricity", 5, 40, ("1.8.1",), "MP1", 0, None)


def r(at: int, value: int, unit: str = "kWh", register: str = "1.8.1") -> MeterRead:
    return MeterRead("E1", register, at, value, unit, "amr")


def test_rollover_versus_rollback() -> None:
    assert advance_milli(99_990_000, 10_000, 5) == 20_000  # 99990 → 00010 kWh
    assert advance_milli(50_000_000, 40_000_000, 5) is None  # went backwards
    assert advance_milli(5, 5, 5) == 0


def test_multiplier_and_sequence_inside_a_batch() -> None:
    v = validate_reads([r(300, 3000), r(100, 1000), r(200, 1500)], {"E1": METER}, {}, now=1000)
    assert v.status == [ACCEPTED] * 3
    assert [(i.start_at, i.end_at, i.quantity_milli) for i in v.intervals] == [
        (100, 200, 500 * 40),
        (200, 300, 1500 * 40),
    ]
    assert v.new_state[("E1", "1.8.1")] == RegisterState(300, 3000, value_since=300)
    assert v.flags == [[], ["initial"], []]


def test_rejections_do_not_break_the_rest_of_the_group() -> None:
    state = {("E1", "1.8.1"): RegisterState(100, 1000)}
    reads = [
        r(50, 900),
        r(100, 1000),
        r(150, 800),
        r(200, 1200),
        r(250, 1300, unit="m3"),
        r(10**9, 2000),
        r(260, 1, register="2.8.0"),
    ]
    v = validate_reads(reads, {"E1": METER}, state, now=1000)
    assert v.status == [
        CHECK_HISTORY, DUPLICATE, REJECTED, ACCEPTED, REJECTED, QUARANTINED, REJECTED
    ]  # fmt: skip
    assert v.reason[2] == "register went backwards without a rollover"
    assert v.reason[4] == "unit m3 does not fit a electricity meter"
    assert v.reason[5] == "read_at is in the future: 277777 h 30 min ahead of the clock"
    assert [i.quantity_milli for i in v.intervals] == [200 * 40]


def test_decode_read_value_forms_agree() -> None:
    from hypothesis import given
    from hypothesis import strategies as st

    from rating.money import parse_quantity_milli
    from schemas.meter_reads import _value_milli

    @given(st.integers(0, 10**12 - 1), st.integers(0, 999), st.integers(0, 3))
    def check(whole: int, frac: int, places: int) -> None:
        text = f"{whole}" if places == 0 else f"{whole}.{str(frac).zfill(3)[:places]}"
        assert _value_milli(text) == parse_quantity_milli(text)
        assert _value_milli(whole) == whole * 1000

    check()
