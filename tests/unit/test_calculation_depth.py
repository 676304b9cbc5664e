"""Tiers, billing power, excess reactive energy, minimum charge, discounts and VAT per
component in one customer's invoice, with the figures worked out by hand in each test."""

from __future__ import annotations

import copy
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing import BillingError
from billing.calculation import ContractInput, DailyConsumption, InvoiceDraft, compute_invoice
from rating.catalog import Catalog
from rating.money import line_amount_fen, vat_fen

MARCH = date(2026, 3, 1)

EL_10KV: dict[str, Any] = {
    "tariff_code": "EL-10KV", "name": "Električna energija – 10 kV", "service": "electricity",
    "category": "10kv", "valid_from": "2026-01-01", "vat_rate": "17", "demo": True,
    "components": [
        {"code": "energy_vt", "kind": "energy", "registers": ["1.8.1"], "price": "0.1200",
         "description": "Aktivna energija VT"},
        {"code": "energy_mt", "kind": "energy", "registers": ["1.8.2"], "price": "0.0600",
         "description": "Aktivna energija MT"},
        {"code": "billing_power", "kind": "billing_power", "price": "9.50", "minimum_kw": "20",
         "description": "Obračunska snaga"},
        {"code": "reactive", "kind": "reactive_excess", "price": "0.0250",
         "description": "Prekomjerna reaktivna energija"},
        {"code": "metering_point_fee", "kind": "fixed_monthly", "price": "8.00", "vat_rate": "0",
         "description": "Naknada za mjerno mjesto (oslobođeno PDV-a)"},
    ]}  # fmt: skip
EL_HH_SOC: dict[str, Any] = {
    "tariff_code": "EL-HH-SOC", "service": "electricity", "category": "households_social",
    "valid_from": "2024-01-01", "vat_rate": "17", "demo": True,
    "components": [
        {"code": "energy_vt_higher", "kind": "energy", "registers": ["1.8.1"], "season": "higher",
         "price": "0.1578", "discount_percent": "20", "description": "Aktivna energija VT"},
        {"code": "energy_mt_higher", "kind": "energy", "registers": ["1.8.2"], "season": "higher",
         "price": "0.0789", "discount_percent": "20", "description": "Aktivna energija MT"},
        {"code": "energy_vt_lower", "kind": "energy", "registers": ["1.8.1"], "season": "lower",
         "price": "0.1262", "discount_percent": "20", "description": "Aktivna energija VT"},
        {"code": "energy_mt_lower", "kind": "energy", "registers": ["1.8.2"], "season": "lower",
         "price": "0.0631", "discount_percent": "20", "description": "Aktivna energija MT"},
        {"code": "metering_point_fee", "kind": "fixed_monthly", "price": "3.50",
         "description": "Naknada za mjerno mjesto"},
    ]}  # fmt: skip
TIERS: list[dict[str, Any]] = [
    {"up_to": "10", "price": "0.80"}, {"up_to": "20", "price": "1.20"},
    {"up_to": None, "price": "1.60"}]  # fmt: skip
W_TIER: dict[str, Any] = {
    "tariff_code": "W-TIER", "service": "water", "category": "water_tiered",
    "valid_from": "2024-01-01", "vat_rate": "17", "demo": True,
    "components": [
        {"code": "water", "kind": "tiered_graduated", "registers": ["8.0"], "tiers": TIERS,
         "description": "Voda"},
        {"code": "metering_point_fee", "kind": "fixed_monthly", "price": "2.50",
         "description": "Fiksna naknada"},
    ]}  # fmt: skip
W_VOL: dict[str, Any] = {
    "tariff_code": "W-VOL", "service": "water", "category": "water_volume",
    "valid_from": "2024-01-01", "vat_rate": "17", "demo": True,
    "components": [{"code": "water", "kind": "tiered_volume", "registers": ["8.0"],
                    "tiers": TIERS, "description": "Voda"}]}  # fmt: skip
EL_MIN: dict[str, Any] = {
    "tariff_code": "EL-MIN", "service": "electricity", "category": "minimum",
    "valid_from": "2024-01-01", "vat_rate": "17", "demo": True,
    "components": [
        {"code": "energy", "kind": "energy", "registers": ["1.8.0"], "price": "0.10",
         "description": "Aktivna energija"},
        {"code": "minimum", "kind": "minimum_charge", "price": "50.00",
         "description": "Minimalni mjesečni iznos"},
    ]}  # fmt: skip
DEPTH_DOCS = [EL_10KV, EL_HH_SOC, W_TIER, W_VOL, EL_MIN]
CATALOG = Catalog.from_documents(DEPTH_DOCS)


def contract(tariff: str, service: str, start: str = "2025-01-01", end: str | None = None,
             cid: str = "C", mp: str = "MP") -> ContractInput:
    return ContractInput(cid, mp, service, tariff, date.fromisoformat(start),
                         date.fromisoformat(end) if end else None)


def rows(service: str, register: str, total_milli: int, first: date, days: int,
         mp: str = "MP") -> list[DailyConsumption]:
    """A total spread over days (the rest on the last day)."""
    per, rest = divmod(total_milli, days)
    out = [DailyConsumption(mp, service, register, first + timedelta(days=i), per)
           for i in range(days)]
    out[-1].quantity_milli += rest
    return out


def demand(kw_milli: int, day: date, mp: str = "MP") -> DailyConsumption:
    return DailyConsumption(mp, "electricity", "1.6.0", day, kw_milli)


def shape(draft: InvoiceDraft) -> list[tuple[str, str | None, int, str, int, int]]:
    return [(ln.component, ln.register, ln.quantity_milli, ln.unit, ln.unit_price_micro,
             ln.amount_fen) for ln in draft.lines]


def test_10kv_business_power_reactive_and_an_exempt_fee() -> None:
    consumption = (rows("electricity", "1.8.1", 8_000_000, MARCH, 31)
                   + rows("electricity", "1.8.2", 4_000_000, MARCH, 31)
                   + rows("electricity", "3.8.0", 5_000_000, MARCH, 31))
    peaks = [demand(38_000, date(2026, 3, 3)), demand(42_300, date(2026, 3, 17))]
    draft = compute_invoice("200001", "2026-03", [contract("EL-10KV", "electricity")],
                            consumption, CATALOG, peaks)
    # VT 8000 × 0.12 = 960.00; MT 4000 × 0.06 = 240.00; power: max 42.3 kW × 9.50 = 401.85
    # reactive: 5000 − 0.3287 × 12000 = 5000 − 3944.4 = 1055.6 kvarh × 0.025 = 26.39
    assert shape(draft) == [
        ("energy_vt", "1.8.1", 8_000_000, "kWh", 120_000, 96_000),
        ("energy_mt", "1.8.2", 4_000_000, "kWh", 60_000, 24_000),
        ("billing_power", None, 42_300, "kW", 9_500_000, 40_185),
        ("reactive", "3.8.0", 1_055_600, "kvarh", 25_000, 2_639),
        ("metering_point_fee", None, 1000, "month", 8_000_000, 800),
    ]
    assert draft.lines[3].description == (
        "Prekomjerna reaktivna energija (izmjereno 5000 kvarh, dozvoljeno 3944,4 kvarh)")
    # VAT per rate: the fee is exempt; 17 % of 1628.24 = 276.8008 → 276.80
    assert [(v.vat_rate, v.base_fen, v.vat_fen) for v in draft.vat] == [
        (Decimal("0"), 800, 0), (Decimal("17"), 162_824, 27_680)]
    assert (draft.net_fen, draft.vat_fen, draft.total_fen) == (163_624, 27_680, 191_304)
    assert [ln.vat_rate for ln in draft.lines] == [Decimal(17)] * 4 + [Decimal(0)]


def test_metered_only_prices_just_the_given_consumption() -> None:
    """For a partial quantity (an estimate): no fee, power, reactive or minimum line."""
    consumption = rows("electricity", "1.8.1", 1_000_000, MARCH, 31)  # no 3.8.0, no demand
    draft = compute_invoice("1", "2026-03", [contract("EL-10KV", "electricity")],
                            consumption, CATALOG, metered_only=True)
    assert shape(draft) == [("energy_vt", "1.8.1", 1_000_000, "kWh", 120_000, 12_000)]
    soc = compute_invoice("1", "2026-03", [contract("EL-HH-SOC", "electricity")],
                          rows("electricity", "1.8.1", 10_000, MARCH, 31), CATALOG,
                          metered_only=True)
    assert [ln.amount_fen for ln in soc.lines] == [158, -32]  # 1.578 → 1.58, −20 % → −0.32
    low = compute_invoice("1", "2026-03", [contract("EL-MIN", "electricity")],
                          rows("electricity", "1.8.0", 100_000, MARCH, 31), CATALOG,
                          metered_only=True)
    assert [ln.component for ln in low.lines] == ["energy"]


def test_an_energy_component_with_its_own_vat_rate() -> None:
    doc = copy.deepcopy(W_TIER)
    doc["components"] = [
        {"code": "water", "kind": "energy", "registers": ["8.0"], "price": "1.00",
         "vat_rate": "0", "description": "Voda (oslobođeno)"},
        {"code": "fee", "kind": "fixed_monthly", "price": "2.50", "description": "Naknada"}]
    draft = compute_invoice("1", "2026-03", [contract("W-TIER", "water")],
                            rows("water", "8.0", 12_345, MARCH, 31), Catalog.from_documents([doc]))
    # 12.345 m³ × 1.00 = 12.345 → 12.35 at 0 %; fee 2.50 at 17 % → 0.425 → 0.43
    assert [(v.vat_rate, v.base_fen, v.vat_fen) for v in draft.vat] == [
        (Decimal("0"), 1_235, 0), (Decimal("17"), 250, 43)]
    assert draft.total_fen == 1_235 + 250 + 43


def test_billing_power_minimum_and_proration_by_contract_days() -> None:
    c = contract("EL-10KV", "electricity", start="2026-03-11")
    consumption = rows("electricity", "1.8.1", 100_000, date(2026, 3, 11), 21)
    consumption += rows("electricity", "3.8.0", 0, date(2026, 3, 11), 21)
    # a peak before the contract starts belongs to someone else
    peaks = [demand(90_000, date(2026, 3, 5)), demand(12_000, date(2026, 3, 20))]
    draft = compute_invoice("1", "2026-03", [c], consumption, CATALOG, peaks)
    power = next(ln for ln in draft.lines if ln.component == "billing_power")
    # 12 kW is below the contracted 20 kW: 20 × 9.50 × 21/31 = 128.709677… → 128.71
    assert (power.quantity_milli, power.amount_fen) == (20_000, 12_871)
    assert power.description == ("Obračunska snaga – ugovorena minimalna snaga 20 kW"
                                 " (11.03.–31.03., 21/31 dana)")
    # no excess reactive energy: no line
    assert "reactive" not in [ln.component for ln in draft.lines]


def test_no_demand_read_bills_the_minimum_and_says_so() -> None:
    c = contract("EL-10KV", "electricity")
    consumption = rows("electricity", "1.8.1", 10_000, MARCH, 31)
    consumption += rows("electricity", "3.8.0", 0, MARCH, 31)
    draft = compute_invoice("1", "2026-03", [c], consumption, CATALOG)
    power = next(ln for ln in draft.lines if ln.component == "billing_power")
    assert (power.quantity_milli, power.amount_fen) == (20_000, 19_000)  # 20 kW × 9.50
    assert "nema očitanja 1.6.0" in power.description


def test_no_demand_read_and_no_minimum_is_an_error_naming_the_contract() -> None:
    doc = copy.deepcopy(EL_10KV)
    del doc["components"][2]["minimum_kw"]
    cat = Catalog.from_documents([doc])
    with pytest.raises(BillingError, match=r"contract C: .*billing_power.* no maximum-demand "
                                           r"read \(1\.6\.0\)"):
        compute_invoice("1", "2026-03", [contract("EL-10KV", "electricity")],
                        rows("electricity", "3.8.0", 0, MARCH, 31), cat)


def test_active_energy_without_reactive_register_is_missing_data() -> None:
    with pytest.raises(BillingError, match=r"contract C: .*reactive.* no 3\.8\.0 consumption"):
        compute_invoice("1", "2026-03", [contract("EL-10KV", "electricity")],
                        rows("electricity", "1.8.1", 10_000, MARCH, 31), CATALOG,
                        [demand(30_000, MARCH)])


def test_social_household_discount_lines_under_each_discounted_line() -> None:
    consumption = (rows("electricity", "1.8.1", 212_345, MARCH, 31)
                   + rows("electricity", "1.8.2", 98_765, MARCH, 31))
    draft = compute_invoice("100009", "2026-03", [contract("EL-HH-SOC", "electricity")],
                            consumption, CATALOG)
    # VT 212.345 × 0.1578 = 33.51, −20 % = −6.702 → −6.70
    # MT  98.765 × 0.0789 =  7.79, −20 % = −1.558 → −1.56; fee 3.50
    assert shape(draft) == [
        ("energy_vt_higher", "1.8.1", 212_345, "kWh", 157_800, 3_351),
        ("energy_vt_higher_discount", "1.8.1", 20_000, "%", 33_510_000, -670),
        ("energy_mt_higher", "1.8.2", 98_765, "kWh", 78_900, 779),
        ("energy_mt_higher_discount", "1.8.2", 20_000, "%", 7_790_000, -156),
        ("metering_point_fee", None, 1000, "month", 3_500_000, 350),
    ]
    assert draft.lines[1].description == "Popust (socijalna kategorija) 20 %"
    # net 36.54, VAT 6.2118 → 6.21
    assert (draft.net_fen, draft.vat_fen, draft.total_fen) == (3_654, 621, 4_275)


def test_graduated_water_one_line_per_block() -> None:
    draft = compute_invoice("1", "2026-03", [contract("W-TIER", "water")],
                            rows("water", "8.0", 25_500, MARCH, 31), CATALOG)
    # 10 × 0.80 = 8.00; 10 × 1.20 = 12.00; 5.5 × 1.60 = 8.80; fee 2.50
    assert shape(draft) == [
        ("water", "8.0", 10_000, "m3", 800_000, 800),
        ("water", "8.0", 10_000, "m3", 1_200_000, 1_200),
        ("water", "8.0", 5_500, "m3", 1_600_000, 880),
        ("metering_point_fee", None, 1000, "month", 2_500_000, 250),
    ]
    assert [ln.description for ln in draft.lines[:3]] == [
        "Voda – blok 1 (0–10 m³)", "Voda – blok 2 (10–20 m³)", "Voda – blok 3 (preko 20 m³)"]


def test_graduated_tiers_prorated_by_contract_days() -> None:
    c = contract("W-TIER", "water", start="2026-03-17")
    draft = compute_invoice("1", "2026-03", [c],
                            rows("water", "8.0", 12_000, date(2026, 3, 17), 15), CATALOG)
    # 15/31 days: bounds 10 × 15/31 = 4.839, 20 × 15/31 = 9.677 m³
    # 4.839 × 0.80 = 3.8712 → 3.87; 4.838 × 1.20 = 5.8056 → 5.81; 2.323 × 1.60 = 3.7168 → 3.72
    # fee 2.50 × 15/31 = 1.2097 → 1.21
    assert [(ln.quantity_milli, ln.amount_fen) for ln in draft.lines] == [
        (4_839, 387), (4_838, 581), (2_323, 372), (484, 121)]
    assert draft.lines[0].description == "Voda – blok 1 (0–4,839 m³) (17.03.–31.03., 15/31 dana)"


def test_volume_tier_prices_the_whole_quantity() -> None:
    def one(total: int) -> tuple[int, int, str]:
        d = compute_invoice("1", "2026-03", [contract("W-VOL", "water")],
                            rows("water", "8.0", total, MARCH, 31), CATALOG)
        assert len(d.lines) == 1
        return d.lines[0].unit_price_micro, d.lines[0].amount_fen, d.lines[0].description

    assert one(25_500) == (1_600_000, 4_080, "Voda – blok 3 (preko 20 m³)")  # 25.5 × 1.60
    assert one(15_000) == (1_200_000, 1_800, "Voda – blok 2 (10–20 m³)")
    assert one(10_000) == (800_000, 800, "Voda – blok 1 (0–10 m³)")  # the bound is inclusive
    # no consumption row at all: no line (as for energy)
    assert compute_invoice("1", "2026-03", [contract("W-VOL", "water")], [], CATALOG).lines == []


def _tier_change(new_tiers: list[dict[str, Any]], fee: str = "2.50") -> Catalog:
    later = copy.deepcopy(W_TIER)
    later["valid_from"] = "2026-03-16"
    later["components"][0]["tiers"] = new_tiers
    later["components"][1]["price"] = fee
    return Catalog.from_documents([W_TIER, later])


def test_mid_month_price_change_of_a_tiered_tariff() -> None:
    cat = _tier_change([{"up_to": "10", "price": "0.90"}, {"up_to": "20", "price": "1.30"},
                        {"up_to": None, "price": "1.70"}])
    consumption = (rows("water", "8.0", 9_000, MARCH, 15)
                   + rows("water", "8.0", 14_000, date(2026, 3, 16), 16))
    draft = compute_invoice("1", "2026-03", [contract("W-TIER", "water")], consumption, cat)
    # 1–15 March (15/31): bounds 4.839 / 9.677; 9 m³: 4.839 × 0.80 = 3.87, 4.161 × 1.20 = 4.99
    # 16–31 March (16/31): bounds 5.161 / 10.323; 14 m³: 5.161 × 0.90 = 4.6449 → 4.64,
    #   5.162 × 1.30 = 6.7106 → 6.71, 3.677 × 1.70 = 6.2509 → 6.25; the fee did not change
    assert shape(draft) == [
        ("water", "8.0", 4_839, "m3", 800_000, 387),
        ("water", "8.0", 4_161, "m3", 1_200_000, 499),
        ("water", "8.0", 5_161, "m3", 900_000, 464),
        ("water", "8.0", 5_162, "m3", 1_300_000, 671),
        ("water", "8.0", 3_677, "m3", 1_700_000, 625),
        ("metering_point_fee", None, 1000, "month", 2_500_000, 250),
    ]
    assert draft.lines[0].description.endswith("(01.03.–15.03., 15/31 dana)")
    assert draft.lines[2].description.endswith("(16.03.–31.03., 16/31 dana)")


def test_a_new_version_that_keeps_the_tiers_does_not_split_them() -> None:
    cat = _tier_change(TIERS, fee="3.00")  # only the fee changes on 16 March
    draft = compute_invoice("1", "2026-03", [contract("W-TIER", "water")],
                            rows("water", "8.0", 25_500, MARCH, 31), cat)
    assert [ln.amount_fen for ln in draft.lines if ln.component == "water"] == [800, 1200, 880]
    # fee 2.50 × 15/31 = 1.2097 → 1.21 and 3.00 × 16/31 = 1.5484 → 1.55
    assert [ln.amount_fen for ln in draft.lines if ln.component != "water"] == [121, 155]


def test_minimum_charge_tops_up_below_the_minimum_only() -> None:
    low = compute_invoice("1", "2026-03", [contract("EL-MIN", "electricity")],
                          rows("electricity", "1.8.0", 100_000, MARCH, 31), CATALOG)
    # 100 kWh × 0.10 = 10.00; minimum 50.00: top-up 40.00, the last line of the place
    assert shape(low) == [("energy", "1.8.0", 100_000, "kWh", 100_000, 1_000),
                          ("minimum", None, 1000, "month", 40_000_000, 4_000)]
    assert low.lines[1].description == "Minimalni mjesečni iznos (dopuna do minimuma 50.00 KM)"
    assert low.net_fen == 5_000
    high = compute_invoice("1", "2026-03", [contract("EL-MIN", "electricity")],
                           rows("electricity", "1.8.0", 600_000, MARCH, 31), CATALOG)
    assert [ln.component for ln in high.lines] == ["energy"]
    # from 16 March: minimum 50.00 × 16/31 = 25.806… → 25.81, top-up 25.81 − 10.00
    part = compute_invoice("1", "2026-03",
                           [contract("EL-MIN", "electricity", start="2026-03-16")],
                           rows("electricity", "1.8.0", 100_000, date(2026, 3, 16), 16), CATALOG)
    assert part.lines[-1].amount_fen == 1_581
    assert part.lines[-1].description.endswith("(dopuna do minimuma 25.81 KM, 16/31 dana)")


def test_minimum_charge_counts_the_discount_and_other_places_apart() -> None:
    doc = copy.deepcopy(EL_MIN)
    doc["components"][0]["discount_percent"] = "50"
    cat = Catalog.from_documents([doc, W_TIER])
    consumption = (rows("electricity", "1.8.0", 800_000, MARCH, 31)
                   + rows("water", "8.0", 30_000, MARCH, 31))
    draft = compute_invoice("1", "2026-03", [contract("EL-MIN", "electricity"),
                                             contract("W-TIER", "water", cid="W")],
                            consumption, cat)
    # 800 kWh × 0.10 = 80.00 − 50 % = 40.00 < 50.00: top-up 10.00 (water does not count)
    assert [(ln.component, ln.amount_fen) for ln in draft.lines][:3] == [
        ("energy", 8_000), ("energy_discount", -4_000), ("minimum", 1_000)]
    assert [ln.service for ln in draft.lines][3:] == ["water"] * 4  # 3 blocks and the fee


def test_season_change_on_1_april_for_the_social_tariff() -> None:
    april = date(2026, 4, 1)
    consumption = (rows("electricity", "1.8.1", 100_000, april, 30)
                   + rows("electricity", "1.8.2", 50_000, april, 30))
    draft = compute_invoice("1", "2026-04", [contract("EL-HH-SOC", "electricity")],
                            consumption, CATALOG)
    # lower season: 100 × 0.1262 = 12.62 −20 % = −2.524 → −2.52; 50 × 0.0631 = 3.155 → 3.16,
    # −20 % = −0.632 → −0.63
    assert [(ln.component, ln.amount_fen) for ln in draft.lines] == [
        ("energy_vt_lower", 1_262), ("energy_vt_lower_discount", -252),
        ("energy_mt_lower", 316), ("energy_mt_lower_discount", -63),
        ("metering_point_fee", 350)]


def test_tiered_discount_is_one_line_under_the_blocks() -> None:
    doc = copy.deepcopy(W_TIER)
    doc["components"][0]["discount_percent"] = "12.5"
    draft = compute_invoice("1", "2026-03", [contract("W-TIER", "water")],
                            rows("water", "8.0", 25_500, MARCH, 31), Catalog.from_documents([doc]))
    # blocks 8.00 + 12.00 + 8.80 = 28.80, −12.5 % = −3.60
    assert [(ln.component, ln.amount_fen) for ln in draft.lines] == [
        ("water", 800), ("water", 1_200), ("water", 880), ("water_discount", -360),
        ("metering_point_fee", 250)]
    assert draft.lines[3].description == "Popust (socijalna kategorija) 12,5 %"


# --- property: the totals always add up, whatever the tariff mixes -------------------------

_PRICE = st.integers(0, 3_000_000).map(lambda m: f"{m // 10**6}.{m % 10**6:06d}")
_RATE = st.sampled_from(["0", "17"])
_KINDS = ["energy", "tiered_graduated", "tiered_volume", "billing_power", "reactive_excess",
          "minimum_charge", "fixed_monthly"]


@st.composite
def _tariff(draw: st.DrawFn) -> dict[str, Any]:
    kinds = draw(st.lists(st.sampled_from(_KINDS), min_size=1, max_size=7))
    comps: list[dict[str, Any]] = []
    for i, kind in enumerate(kinds):
        comp: dict[str, Any] = {"code": f"c{i}", "kind": kind, "vat_rate": draw(_RATE)}
        if kind in ("tiered_graduated", "tiered_volume"):
            bounds = sorted(set(draw(st.lists(st.integers(1, 500), max_size=3))))
            comp["tiers"] = [{"up_to": str(b), "price": draw(_PRICE)} for b in bounds]
            comp["tiers"].append({"up_to": None, "price": draw(_PRICE)})
        else:
            comp["price"] = draw(_PRICE)
        if kind in ("energy", "tiered_graduated", "tiered_volume"):
            comp["registers"] = ["1.8.0"]
            if draw(st.booleans()):
                pct = draw(st.integers(0, 10_000))
                comp["discount_percent"] = f"{pct // 100}.{pct % 100:02d}"
        if kind == "billing_power" and draw(st.booleans()):
            comp["minimum_kw"] = str(draw(st.integers(0, 100)))
        comps.append(comp)
    return {"tariff_code": "T", "service": "electricity", "valid_from": "2026-01-01",
            "vat_rate": draw(_RATE), "components": comps}


@st.composite
def _new_prices(draw: st.DrawFn, doc: dict[str, Any], valid_from: str) -> dict[str, Any]:
    """The same tariff from `valid_from` with new prices and VAT rates."""
    out = copy.deepcopy(doc)
    out["valid_from"] = valid_from
    for comp in out["components"]:
        comp["vat_rate"] = draw(_RATE)
        for priced in comp.get("tiers", [comp]):
            priced["price"] = draw(_PRICE)
    return out


@settings(max_examples=200, deadline=None)
@given(data=st.data(), start_day=st.integers(1, 31), change_day=st.integers(1, 31),
       kwh=st.lists(st.integers(0, 2_000_000), min_size=31, max_size=31),
       kvarh=st.lists(st.integers(0, 1_000_000), min_size=31, max_size=31),
       peak=st.integers(0, 500_000))
def test_totals_are_the_lines_plus_vat_per_rate(data: st.DataObject, start_day: int,
                                                change_day: int, kwh: list[int],
                                                kvarh: list[int], peak: int) -> None:
    """Random tariffs mixing every kind, a contract from any day, a new version on any day."""
    doc = data.draw(_tariff())
    docs = [doc]
    if change_day > 1:
        docs.append(data.draw(_new_prices(doc, f"2026-03-{change_day:02d}")))
    cat = Catalog.from_documents(docs)
    kinds = {c["kind"] for c in doc["components"]}
    start = date(2026, 3, start_day)
    days = [start + timedelta(days=i) for i in range((date(2026, 4, 1) - start).days)]
    consumption = []
    if kinds & {"energy", "tiered_graduated", "tiered_volume"}:
        consumption += [DailyConsumption("MP", "electricity", "1.8.0", d, kwh[d.day - 1])
                        for d in days]
    if "reactive_excess" in kinds:
        consumption += [DailyConsumption("MP", "electricity", "3.8.0", d, kvarh[d.day - 1])
                        for d in days]
    c = contract("T", "electricity", start=start.isoformat())
    draft = compute_invoice("1", "2026-03", [c], consumption, cat, [demand(peak, start)])
    assert draft.net_fen == sum(ln.amount_fen for ln in draft.lines)
    rates = sorted({ln.vat_rate for ln in draft.lines})
    assert [v.vat_rate for v in draft.vat] == rates
    for v in draft.vat:
        assert v.base_fen == sum(ln.amount_fen for ln in draft.lines if ln.vat_rate == v.vat_rate)
        assert v.vat_fen == vat_fen(v.base_fen, v.vat_rate)
    assert draft.vat_fen == sum(v.vat_fen for v in draft.vat)
    assert draft.total_fen == draft.net_fen + draft.vat_fen
    for ln in draft.lines:  # metered and tier lines are quantity × price, rounded once
        if ln.unit in ("kWh", "kvarh"):
            assert ln.amount_fen == line_amount_fen(ln.quantity_milli, ln.unit_price_micro)
        if ln.unit == "%":  # a discount takes at most the discounted amount
            assert -ln.unit_price_micro // 10_000 <= ln.amount_fen <= 0
        else:
            assert ln.amount_fen >= 0
