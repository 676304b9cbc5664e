"""One customer's invoice, with the figures worked out by hand in each test."""

from __future__ import annotations

import copy
import json
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing import BillingError
from billing.calculation import (
    ContractInput,
    DailyConsumption,
    InvoiceDraft,
    compute_invoice,
)
from rating.catalog import Catalog

DOCS = json.loads((Path(__file__).resolve().parents[2] / "app/demo/catalog.json").read_text())
CATALOG = Catalog.from_documents(DOCS)
OPEN = None


def contract(cid: str, mp: str, service: str, tariff: str, start: str = "2025-01-01",
             end: str | None = OPEN, area: str | None = None) -> ContractInput:
    return ContractInput(cid, mp, service, tariff, date.fromisoformat(start),
                         date.fromisoformat(end) if end else None,
                         Decimal(area) if area is not None else None)


def day_rows(mp: str, service: str, register: str, milli_per_day: dict[date, int]
             ) -> list[DailyConsumption]:
    return [DailyConsumption(mp, service, register, d, q) for d, q in milli_per_day.items()]


def spread(total_milli: int, first: date, days: int) -> dict[date, int]:
    """A month's total spread over days (the rest on the last day): only the sum matters."""
    per, rest = divmod(total_milli, days)
    out = {first + timedelta(days=i): per for i in range(days)}
    out[first + timedelta(days=days - 1)] += rest
    return out


def amounts(draft: InvoiceDraft) -> list[tuple[str, str, int, int]]:
    return [(ln.service, ln.component, ln.quantity_milli, ln.amount_fen) for ln in draft.lines]


MARCH = date(2026, 3, 1)


def test_full_month_household() -> None:
    contracts = [
        contract("C-E", "MP1", "electricity", "EL-HH"),
        contract("C-W", "MP1", "water", "W-HH"),
        contract("C-S", "MP1", "waste", "WA-HH"),
    ]
    rows = (
        day_rows("MP1", "electricity", "1.8.1", spread(212_345, MARCH, 31))
        + day_rows("MP1", "electricity", "1.8.2", spread(98_765, MARCH, 31))
        + day_rows("MP1", "water", "8.0", spread(12_500, MARCH, 31))
    )
    draft = compute_invoice("100001", "2026-03", contracts, rows, CATALOG)
    # VT  212.345 kWh × 0.1578 = 33.5080410 → 33.51 KM
    # MT   98.765 kWh × 0.0789 =  7.7925585 →  7.79 KM
    # water 12.5 m³ × 1.068376 = 13.3547    → 13.35 KM; fees 3.50 + 2.50 + 9.00
    assert amounts(draft) == [
        ("electricity", "energy_vt_higher", 212_345, 3351),
        ("electricity", "energy_mt_higher", 98_765, 779),
        ("electricity", "metering_point_fee", 1000, 350),
        ("water", "water_sewage", 12_500, 1335),
        ("water", "metering_point_fee", 1000, 250),
        ("waste", "waste_household", 1000, 900),
    ]
    assert [ln.register for ln in draft.lines] == ["1.8.1", "1.8.2", None, "8.0", None, None]
    assert [ln.unit for ln in draft.lines] == ["kWh", "kWh", "month", "m3", "month", "month"]
    assert draft.lines[0].unit_price_micro == 157_800
    assert draft.lines[2].description == "Naknada za mjerno mjesto"  # full month: no days
    # net 69.65; VAT 17 % = 11.8405 → 11.84; total 81.49
    assert (draft.net_fen, draft.vat_fen, draft.total_fen) == (6965, 1184, 8149)
    assert [(r.vat_rate, r.base_fen, r.vat_fen) for r in draft.vat] == [(Decimal(17), 6965, 1184)]


def test_contract_starting_on_the_11th() -> None:
    c = contract("C-E", "MP1", "electricity", "EL-HH", start="2026-03-11")
    rows = day_rows("MP1", "electricity", "1.8.1",
                    {date(2026, 3, 5): 50_000, date(2026, 3, 20): 10_000})
    draft = compute_invoice("100001", "2026-03", [c], rows, CATALOG)
    # only 20 March counts: 10 kWh × 0.1578 = 1.578 → 1.58
    # fee: 3.50 × 21/31 = 2.370967… → 2.37; quantity 21/31 month = 0.677419… → 0.677
    assert amounts(draft) == [
        ("electricity", "energy_vt_higher", 10_000, 158),
        ("electricity", "metering_point_fee", 677, 237),
    ]
    assert draft.lines[1].description == "Naknada za mjerno mjesto (21/31 dana)"


def test_business_waste_per_m2_half_up_and_prorated() -> None:
    full = compute_invoice("200001", "2026-03",
                           [contract("C-S", "MP9", "waste", "WA-BU", area="85.5")], [], CATALOG)
    # 85.5 m² × 0.25 = 21.375 → 21.38 (half up)
    assert amounts(full) == [("waste", "waste_area", 85_500, 2138)]
    assert full.lines[0].unit == "m2"
    assert full.lines[0].description == "Odvoz smeća po m² poslovnog prostora"
    part = compute_invoice(
        "200001", "2026-03",
        [contract("C-S", "MP9", "waste", "WA-BU", end="2026-03-20", area="85.50")], [], CATALOG)
    # 21.375 × 20/31 = 13.790322… → 13.79
    assert amounts(part) == [("waste", "waste_area", 85_500, 1379)]
    assert part.lines[0].description.endswith("(20/31 dana)")


def price_change_catalog() -> Catalog:
    doc = copy.deepcopy(next(d for d in DOCS if d["tariff_code"] == "EL-HH"))
    doc["valid_from"] = "2026-03-15"
    for comp in doc["components"]:
        if comp["code"] == "energy_vt_higher":
            comp["price"] = "0.1700"
        if comp["code"] == "metering_point_fee":
            comp["price"] = "4.00"
    return Catalog.from_documents([*DOCS, doc])


def test_price_change_on_the_15th_splits_energy_and_fee() -> None:
    c = contract("C-E", "MP1", "electricity", "EL-HH")
    rows = day_rows("MP1", "electricity", "1.8.1", {MARCH + timedelta(days=i): 10_000
                                                    for i in range(31)})
    rows += day_rows("MP1", "electricity", "1.8.2", {MARCH + timedelta(days=i): 2_000
                                                     for i in range(31)})
    draft = compute_invoice("100001", "2026-03", [c], rows, price_change_catalog())
    # VT 1–14 March: 140 kWh × 0.1578 = 22.092 → 22.09; 15–31: 170 kWh × 0.17 = 28.90
    # MT unchanged: 62 kWh × 0.0789 = 4.8918 → 4.89 (one line)
    # fee 3.50 × 14/31 = 1.5806… → 1.58; 4.00 × 17/31 = 2.1935… → 2.19
    assert amounts(draft) == [
        ("electricity", "energy_vt_higher", 140_000, 2209),
        ("electricity", "energy_vt_higher", 170_000, 2890),
        ("electricity", "energy_mt_higher", 62_000, 489),
        ("electricity", "metering_point_fee", 452, 158),
        ("electricity", "metering_point_fee", 548, 219),
    ]
    assert [ln.unit_price_micro for ln in draft.lines] == [157_800, 170_000, 78_900, 3_500_000,
                                                          4_000_000]
    assert draft.lines[0].description == "Aktivna energija VT (viša sezona) (01.03.–14.03.)"
    assert draft.lines[1].description == "Aktivna energija VT (viša sezona) (15.03.–31.03.)"
    assert draft.lines[2].description == "Aktivna energija MT (viša sezona)"
    assert draft.lines[3].description == "Naknada za mjerno mjesto (14/31 dana)"
    # net 22.09 + 28.90 + 4.89 + 1.58 + 2.19 = 59.65; VAT 10.1405 → 10.14
    assert (draft.net_fen, draft.vat_fen, draft.total_fen) == (5965, 1014, 6979)


def test_same_price_across_versions_stays_one_fee_line() -> None:
    doc = copy.deepcopy(next(d for d in DOCS if d["tariff_code"] == "W-HH"))
    doc["valid_from"] = "2026-03-10"
    cat = Catalog.from_documents([*DOCS, doc])
    draft = compute_invoice("1", "2026-03", [contract("C", "MP", "water", "W-HH")], [], cat)
    assert amounts(draft) == [("water", "metering_point_fee", 1000, 250)]


def test_lower_season_prices_in_april() -> None:
    c = contract("C-E", "MP1", "electricity", "EL-HH")
    rows = day_rows("MP1", "electricity", "1.8.2", {date(2026, 4, 30): 100_000})
    draft = compute_invoice("1", "2026-04", [c], rows, CATALOG)
    # 100 kWh × 0.0631 = 6.31; fee full April (30 days)
    assert amounts(draft) == [("electricity", "energy_mt_lower", 100_000, 631),
                              ("electricity", "metering_point_fee", 1000, 350)]


def test_consecutive_contracts_on_one_point_share_the_fee_line() -> None:
    a = contract("C1", "MP1", "electricity", "EL-HH", end="2026-03-09")
    b = contract("C2", "MP1", "electricity", "EL-HH", start="2026-03-10")
    draft = compute_invoice("1", "2026-03", [a, b], [], CATALOG)
    assert amounts(draft) == [("electricity", "metering_point_fee", 1000, 350)]


def test_consumption_without_a_price_is_an_error() -> None:
    c = contract("C-J", "MP7", "electricity", "EL-JR")
    rows = day_rows("MP7", "electricity", "1.8.1", {date(2026, 3, 3): 1_000})
    with pytest.raises(BillingError, match=r"EL-JR .*register 1\.8\.1 on 2026-03-03"):
        compute_invoice("1", "2026-03", [c], rows, CATALOG)
    zero = day_rows("MP7", "electricity", "1.8.1", {date(2026, 3, 3): 0})
    assert len(compute_invoice("1", "2026-03", [c], zero, CATALOG).lines) == 1  # fee only


@pytest.mark.parametrize(
    ("contracts", "reason"),
    [
        ([contract("C", "MP", "water", "NOPE")], "contract C: unknown tariff 'NOPE'"),
        ([contract("C", "MP", "waste", "WA-BU")], "MP: area_m2 is required by tariff WA-BU"),
        ([contract("C", "MP", "waste", "WA-BU", area="1.005")], "at most 2 decimals"),
        ([contract("C", "MP", "gas", "W-HH")], "unknown service 'gas'"),
        ([contract("A", "MP", "water", "W-HH"),
          contract("B", "MP", "water", "W-HH", start="2026-03-31")], "A and B overlap"),
    ],
)
def test_bad_master_data_is_named(contracts: list[ContractInput], reason: str) -> None:
    with pytest.raises(BillingError, match=reason):
        compute_invoice("1", "2026-03", contracts, [], CATALOG)


def test_no_tariff_version_in_force() -> None:
    # the demo catalog starts on 2024-01-01
    with pytest.raises(BillingError, match="W-HH' has no version in force on 2023-12-01"):
        compute_invoice("1", "2023-12", [contract("C", "MP", "water", "W-HH", start="2023-06-01")],
                        [], CATALOG)


def test_bad_period() -> None:
    with pytest.raises(BillingError, match="period"):
        compute_invoice("1", "2026-13", [], [], CATALOG)


def test_vat_per_rate() -> None:
    doc = copy.deepcopy(next(d for d in DOCS if d["tariff_code"] == "WA-HH"))
    doc["vat_rate"] = "0"
    cat = Catalog.from_documents([*[d for d in DOCS if d["tariff_code"] != "WA-HH"], doc])
    draft = compute_invoice("1", "2026-03", [contract("W", "MP", "water", "W-HH"),
                                             contract("S", "MP", "waste", "WA-HH")], [], cat)
    assert [(r.vat_rate, r.base_fen, r.vat_fen) for r in draft.vat] == [
        (Decimal(0), 900, 0), (Decimal(17), 250, 43)]  # 2.50 × 17 % = 0.425 → 0.43
    assert (draft.net_fen, draft.vat_fen, draft.total_fen) == (1150, 43, 1193)


TARIFFS = {"electricity": ["EL-HH", "EL-OP"], "water": ["W-HH", "W-VS", "W-BU"],
           "waste": ["WA-HH", "WA-BU"]}
REGISTERS = {"electricity": ["1.8.1", "1.8.2"], "water": ["8.0"], "waste": []}


@st.composite
def customers(draw: st.DrawFn) -> tuple[str, list[ContractInput], list[DailyConsumption]]:
    period = draw(st.sampled_from(["2026-02", "2026-03", "2026-04", "2024-02"]))
    first = date.fromisoformat(period + "-01")
    contracts, rows = [], []
    for k in range(draw(st.integers(1, 4))):
        service = draw(st.sampled_from(sorted(TARIFFS)))
        start = first + timedelta(days=draw(st.integers(-40, 27)))
        length = draw(st.one_of(st.none(), st.integers(0, 60)))
        end = None if length is None else start + timedelta(days=length)
        mp = f"MP{k}"
        tariff = draw(st.sampled_from(TARIFFS[service]))
        area = Decimal(draw(st.integers(0, 100_000))) / 100
        contracts.append(ContractInput(f"C{k}", mp, service, tariff, start, end, area))
        for register in REGISTERS[service]:
            for day in draw(st.sets(st.integers(0, 27), max_size=10)):
                rows.append(DailyConsumption(mp, service, register, first + timedelta(day),
                                             draw(st.integers(0, 5_000_000))))
    return period, contracts, rows


@settings(max_examples=200, deadline=None)
@given(customers())
def test_totals_add_up(case: tuple[str, list[ContractInput], list[DailyConsumption]]) -> None:
    period, contracts, rows = case
    draft = compute_invoice("1", period, contracts, rows, CATALOG)
    assert draft.net_fen == sum(ln.amount_fen for ln in draft.lines)
    assert draft.vat_fen == sum(r.vat_fen for r in draft.vat)
    assert draft.total_fen == sum(ln.amount_fen for ln in draft.lines) + sum(
        r.vat_fen for r in draft.vat)
    assert sum(r.base_fen for r in draft.vat) == draft.net_fen
    # every unit of consumption on a contract day is invoiced exactly once
    covered = sum(
        r.quantity_milli for r in rows
        if any(c.metering_point_id == r.metering_point_id and c.valid_from <= r.local_day
               and (c.valid_to is None or r.local_day <= c.valid_to) for c in contracts)
    )
    assert sum(ln.quantity_milli for ln in draft.lines if ln.unit in ("kWh", "m3")) == covered
    # a fee never exceeds the full month's price
    for ln in draft.lines:
        if ln.unit == "month":
            assert 0 < ln.quantity_milli <= 1000
            assert ln.amount_fen <= ln.unit_price_micro // 10_000
