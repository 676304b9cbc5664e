import copy
from datetime import date
from typing import Any

import pytest

from rating.catalog import CatalogError, parse_tariff
from rating.tiers import (
    Tier,
    TierError,
    graduated_amount_nano,
    graduated_lines,
    parse_tiers,
    prorate_tiers,
    volume_line,
)

TIERS = parse_tiers([{"up_to": "100", "price": "0.10"}, {"up_to": "300", "price": "0.15"},
                     {"up_to": None, "price": "0.25"}])  # fmt: skip


def test_parse_tiers() -> None:
    assert parse_tiers([{"up_to": "100", "price": "0.10"}, {"up_to": None, "price": "0.2"}]) == (
        Tier(100_000, 100_000),
        Tier(None, 200_000),
    )
    assert TIERS[1] == Tier(300_000, 150_000)


def test_graduated_blocks_each_at_its_own_price() -> None:
    lines = graduated_lines(350_000, TIERS)  # 100 × 0.10 + 200 × 0.15 + 50 × 0.25
    assert [(ln.quantity_milli, ln.amount_fen) for ln in lines] == [
        (100_000, 1000),
        (200_000, 3000),
        (50_000, 1250),
    ]
    assert graduated_amount_nano(350_000, TIERS) == sum(
        ln.quantity_milli * ln.price_micro for ln in lines
    )


def test_graduated_edge_is_inclusive_and_zero_has_one_line() -> None:
    assert [ln.tier for ln in graduated_lines(100_000, TIERS)] == [0]
    assert [ln.tier for ln in graduated_lines(100_001, TIERS)] == [0, 1]
    assert [(ln.tier, ln.amount_fen) for ln in graduated_lines(0, TIERS)] == [(0, 0)]


def test_each_block_line_is_rounded_half_up_on_its_own() -> None:
    tiers = parse_tiers([{"up_to": "0.05", "price": "0.1"}, {"up_to": None, "price": "0.1"}])
    # 0.05 × 0.1 = 0.005 → 0.01; 0.05 × 0.1 → 0.01: two lines of 1 fening, not one of 1
    assert [ln.amount_fen for ln in graduated_lines(100, tiers)] == [1, 1]


def test_volume_prices_everything_at_the_tier_reached() -> None:
    assert volume_line(100_000, TIERS).amount_fen == 1000  # 100 × 0.10
    line = volume_line(100_001, TIERS)  # 100.001 × 0.15 = 15.00015
    assert (line.tier, line.price_micro, line.amount_fen) == (1, 150_000, 1500)
    assert volume_line(1_000_000, TIERS).amount_fen == 25_000


def test_negative_quantity_is_refused() -> None:
    with pytest.raises(TierError, match="quantity_milli"):
        graduated_lines(-1, TIERS)
    with pytest.raises(TierError, match="quantity_milli"):
        volume_line(-1, TIERS)


def test_prorated_bounds_for_part_of_a_month() -> None:
    half = prorate_tiers(TIERS, 15, 30)
    assert [t.up_to_milli for t in half] == [50_000, 150_000, None]
    assert [t.up_to_milli for t in prorate_tiers(TIERS, 1, 31)] == [3226, 9677, None]
    with pytest.raises(TierError, match="days"):
        prorate_tiers(TIERS, 0, 30)


@pytest.mark.parametrize(
    ("tiers", "message"),
    [
        ([], r"tiers: must be a non-empty list"),
        ("100", r"tiers: must be a non-empty list"),
        ([{"up_to": None}], r"tiers\[0\]\.price: is required"),
        ([{"up_to": None, "price": "0.1234567"}], r"tiers\[0\]\.price: .*6 decimals"),
        ([{"up_to": None, "price": "-1"}], r"tiers\[0\]\.price: must not be negative"),
        ([{"price": "1"}], r"tiers\[0\]\.up_to: is required"),
        (
            [{"up_to": None, "price": "1"}, {"up_to": None, "price": "2"}],
            r"tiers\[0\]\.up_to: only the last tier may be open",
        ),
        ([{"up_to": "100", "price": "1"}], r"tiers\[0\]\.up_to: the last tier must be open"),
        (
            [
                {"up_to": "100", "price": "1"},
                {"up_to": "100", "price": "1"},
                {"up_to": None, "price": "1"},
            ],
            r"tiers\[1\]\.up_to: must be greater .*\(100\)",
        ),
        (
            [{"up_to": "0", "price": "1"}, {"up_to": None, "price": "1"}],
            r"tiers\[0\]\.up_to: must be greater",
        ),
        (
            [{"up_to": "1.2345", "price": "1"}, {"up_to": None, "price": "1"}],
            r"tiers\[0\]\.up_to: .*3 decimals",
        ),
        ([5], r"tiers\[0\]: must be an object"),
    ],
)
def test_tier_errors_name_the_field(tiers: object, message: str) -> None:
    with pytest.raises(TierError, match=message):
        parse_tiers(tiers)


WATER: dict[str, Any] = {
    "tariff_code": "W-TIER", "service": "water", "valid_from": "2026-01-01", "vat_rate": "17",
    "components": [
        {"code": "water_blocks", "kind": "tiered_graduated", "registers": ["8.0"],
         "tiers": [{"up_to": "10", "price": "0.90"}, {"up_to": None, "price": "1.40"}]},
        {"code": "fee", "kind": "fixed_monthly", "price": "2.50"},
    ],
}  # fmt: skip


def test_catalog_tiered_components() -> None:
    v = parse_tariff(WATER)
    comp = v.tiered_component("8.0", date(2026, 2, 1))
    assert comp is not None and comp.kind == "tiered_graduated" and comp.unit == "m3"
    assert comp.tiers == (Tier(10_000, 900_000), Tier(None, 1_400_000))
    assert v.energy_component("8.0", date(2026, 2, 1)) is None  # not a flat energy price
    vol = copy.deepcopy(WATER)
    vol["components"][0]["kind"] = "tiered_volume"
    assert parse_tariff(vol).components[0].kind == "tiered_volume"


def test_catalog_tier_errors_carry_the_component_path() -> None:
    bad = copy.deepcopy(WATER)
    bad["components"][0]["tiers"][1]["price"] = "x"
    with pytest.raises(CatalogError, match=r"components\[0\]\.tiers\[1\]\.price: not a price"):
        parse_tariff(bad)
    bad = copy.deepcopy(WATER)
    del bad["components"][0]["tiers"]
    with pytest.raises(CatalogError, match=r"components\[0\]\.tiers: must be a non-empty list"):
        parse_tariff(bad)
    bad = copy.deepcopy(WATER)
    bad["components"][1]["tiers"] = []
    with pytest.raises(CatalogError, match=r"components\[1\]\.tiers: only for"):
        parse_tariff(bad)
    bad = copy.deepcopy(WATER)
    bad["service"] = "waste"
    with pytest.raises(CatalogError, match=r"components\[0\]\.kind: waste"):
        parse_tariff(bad)
