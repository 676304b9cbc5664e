from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rating.money import (
    format_km,
    format_price,
    format_quantity,
    line_amount_fen,
    parse_amount_fen,
    parse_price_micro,
    parse_quantity_milli,
    round_half_up_div,
    vat_fen,
)


def test_half_up_rounds_away_from_zero_at_half() -> None:
    assert round_half_up_div(5, 10) == 1
    assert round_half_up_div(4, 10) == 0
    assert round_half_up_div(-5, 10) == -1
    assert round_half_up_div(15, 10) == 2


def test_line_amount_is_quantity_times_price_half_up() -> None:
    # 212.345 kWh × 0.1578 KM = 33.507041 KM → 33.51
    assert line_amount_fen(212345, 157800) == 3351
    # 0.5 fening exactly rounds up: 1 kWh × 0.005 KM
    assert line_amount_fen(1000, 5000) == 1


def test_vat_17_percent() -> None:
    assert vat_fen(10000, Decimal(17)) == 1700
    assert vat_fen(3351, Decimal(17)) == 570  # 569.67 → 570


@pytest.mark.parametrize("bad", ["1.2345678", "x", "NaN", "Infinity"])
def test_price_parse_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_price_micro(bad)


def test_parsers() -> None:
    assert parse_price_micro("0.1578") == 157800
    assert parse_quantity_milli("1234.567") == 1234567
    assert parse_quantity_milli(12) == 12000
    assert parse_amount_fen("45.00") == 4500
    with pytest.raises(ValueError):
        parse_quantity_milli("1.0001")
    with pytest.raises(ValueError):
        parse_quantity_milli(True)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        parse_amount_fen("1.001")


def test_formatting() -> None:
    assert format_km(4500) == "45.00"
    assert format_km(-5) == "-0.05"
    assert format_quantity(312000) == "312.000"
    assert format_price(157800) == "0.1578"
    assert format_price(2500000) == "2.50"
    assert format_price(1068376) == "1.068376"


@given(st.integers(-(10**12), 10**12))
def test_amount_roundtrip(fen: int) -> None:
    assert parse_amount_fen(format_km(fen)) == fen


@pytest.mark.parametrize("bad", ["1e999990", "1e-999990", "-1E+40"])
def test_huge_exponents_are_refused_at_once(bad: str) -> None:
    for parse in (parse_quantity_milli, parse_price_micro, parse_amount_fen):
        with pytest.raises(ValueError, match="out of range"):
            parse(bad)
