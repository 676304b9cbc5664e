import copy
from decimal import Decimal
from typing import Any

import pytest

from rating.catalog import CatalogError, parse_tariff
from rating.demand import (
    DemandError,
    active_energy_milli,
    billing_power_fen,
    demand_charges,
    discount_fen,
    minimum_charge_fen,
    minimum_charges,
    reactive_allowance_milli,
    reactive_excess_fen,
)

EL_10KV: dict[str, Any] = {
    "tariff_code": "EL-10", "service": "electricity", "category": "10kv",
    "valid_from": "2026-01-01", "vat_rate": "17", "demo": True,
    "components": [
        {"code": "energy_vt", "kind": "energy", "registers": ["1.8.1"], "price": "0.12",
         "discount_percent": "10"},
        {"code": "energy_mt", "kind": "energy", "registers": ["1.8.2"], "price": "0.06"},
        {"code": "power", "kind": "billing_power", "price": "9.50", "minimum_kw": "20"},
        {"code": "reactive", "kind": "reactive_excess", "price": "0.0250"},
        {"code": "minimum", "kind": "minimum_charge", "price": "50.00"},
        {"code": "connection_fee", "kind": "fixed_monthly", "price": "4.00", "vat_rate": "0"},
    ],
}  # fmt: skip


def test_billing_power_with_minimum_and_proration() -> None:
    assert billing_power_fen(42_300, 9_500_000) == (42_300, 40_185)  # 42.3 kW × 9.50
    assert billing_power_fen(12_000, 9_500_000, minimum_milli=20_000) == (20_000, 19_000)
    # 15 of 30 days: half of 42.3 × 9.50 = 200.925 → 200.93 (half up)
    assert billing_power_fen(42_300, 9_500_000, days=15, days_in_month=30)[1] == 20_093
    with pytest.raises(DemandError, match="max_demand_milli"):
        billing_power_fen(-1, 1)
    with pytest.raises(DemandError, match="days"):
        billing_power_fen(1, 1, days=31, days_in_month=30)


def test_reactive_allowance_is_tan_phi_of_cos_095() -> None:
    assert reactive_allowance_milli(1_000_000) == 328_700  # 1000 kWh → 328.7 kvarh free
    assert reactive_allowance_milli(1_000) == 329  # 0.3287 → 0.329 (half up)
    assert reactive_excess_fen(328_700, 1_000_000, 25_000) == (0, 0)
    assert reactive_excess_fen(328_701, 1_000_000, 25_000) == (1, 0)
    # 500 kvarh on 1000 kWh: 171.3 kvarh excess × 0.025 = 4.2825 → 4.28
    assert reactive_excess_fen(500_000, 1_000_000, 25_000) == (171_300, 428)
    assert reactive_excess_fen(100_000, 0, 25_000) == (100_000, 250)
    with pytest.raises(DemandError, match="reactive_milli"):
        reactive_excess_fen(-5, 0, 1)


def test_minimum_charge_tops_up_only_below_the_minimum() -> None:
    assert minimum_charge_fen(3_000, 50_000_000) == 2_000
    assert minimum_charge_fen(6_000, 50_000_000) == 0
    assert minimum_charge_fen(0, 50_000_000, days=10, days_in_month=31) == 1_613  # 16.129


def test_discount_is_negative_and_half_up() -> None:
    assert discount_fen(1_005, Decimal("10")) == -101  # 100.5 → 101
    assert discount_fen(1_000, Decimal("12.5")) == -125
    assert discount_fen(-1_005, Decimal("10")) == 101
    with pytest.raises(DemandError, match="discount_percent"):
        discount_fen(100, Decimal("100.5"))
    with pytest.raises(DemandError, match="discount_percent"):
        discount_fen(100, Decimal("1.234"))


def test_active_energy_never_counts_a_register_twice() -> None:
    assert active_energy_milli({"1.8.0": 900, "1.8.1": 600, "1.8.2": 300}) == 900
    assert active_energy_milli({"1.8.0": 900}) == 900
    assert active_energy_milli({"1.8.2": 300}) == 300


def test_catalog_depth_fields_and_tariff_lines() -> None:
    v = parse_tariff(EL_10KV)
    comps = {c.code: c for c in v.components}
    assert comps["energy_vt"].discount_percent == Decimal("10")
    assert comps["power"].registers == ("1.6.0",) and comps["power"].unit == "kW"
    assert comps["power"].minimum_milli == 20_000
    assert comps["reactive"].registers == ("3.8.0",) and comps["reactive"].tan_phi_micro == 328_700
    assert v.vat_rate_of(comps["connection_fee"]) == Decimal("0")
    assert v.vat_rate_of(comps["energy_mt"]) == Decimal("17")
    assert v.tou_scheme == "other"
    totals = {"1.8.1": 8_000_000, "1.8.2": 4_000_000, "1.6.0": 55_500, "3.8.0": 5_000_000}
    lines = {c.component: c for c in demand_charges(v, totals, days=31, days_in_month=31)}
    assert (lines["power"].quantity_milli, lines["power"].amount_fen) == (55_500, 52_725)
    # allowance 12000 × 0.3287 = 3944.4 kvarh; excess 1055.6 × 0.025 = 26.39
    assert (lines["reactive"].quantity_milli, lines["reactive"].amount_fen) == (1_055_600, 2_639)
    assert lines["reactive"].unit == "kvarh" and lines["reactive"].vat_rate == Decimal("17")
    assert [c.amount_fen for c in minimum_charges(v, 4_200, days=31, days_in_month=31)] == [800]
    assert minimum_charges(v, 5_000, days=31, days_in_month=31) == []


@pytest.mark.parametrize(
    ("index", "patch", "message"),
    [
        (2, {"minimum_kw": "-1"}, r"components\[2\]\.minimum_kw: must be positive"),
        (2, {"minimum_kw": "1.2345"}, r"components\[2\]\.minimum_kw: .*3 decimals"),
        (3, {"tan_phi": "0"}, r"components\[3\]\.tan_phi: must be positive"),
        (3, {"minimum_kw": "5"}, r"components\[3\]\.minimum_kw: only for billing_power"),
        (2, {"unit": "kWh"}, r"components\[2\]\.unit: must be kW"),
        (3, {"registers": "3.8.0"}, r"components\[3\]\.registers: must be a list"),
        (4, {"price": None}, r"components\[4\]\.price: is required"),
        (5, {"vat_rate": "117"}, r"components\[5\]\.vat_rate: must be between 0 and 100"),
        (5, {"vat_rate": "x"}, r"components\[5\]\.vat_rate: not a number"),
        (5, {"discount_percent": "5"}, r"components\[5\]\.discount_percent: only on energy"),
        (0, {"discount_percent": "150"}, r"components\[0\]\.discount_percent: must be between"),
        (0, {"discount_percent": "1.234"}, r"components\[0\]\.discount_percent: at most 2"),
    ],
)
def test_catalog_errors_name_the_field(index: int, patch: dict[str, object], message: str) -> None:
    doc = copy.deepcopy(EL_10KV)
    doc["components"][index].update(patch)
    with pytest.raises(CatalogError, match=message):
        parse_tariff(doc)


def test_power_and_reactive_are_electricity_only_and_schemes_checked() -> None:
    water = {"tariff_code": "W", "service": "water", "valid_from": "2026-01-01",
             "components": [{"code": "p", "kind": "billing_power", "price": "1"}]}  # fmt: skip
    with pytest.raises(CatalogError, match=r"components\[0\]\.kind: billing_power is for"):
        parse_tariff(water)
    doc = copy.deepcopy(EL_10KV)
    doc["tou_scheme"] = "night"
    with pytest.raises(CatalogError, match="tou_scheme: must be one of"):
        parse_tariff(doc)
    doc["tou_scheme"] = "households"
    assert parse_tariff(doc).tou_scheme == "households"
