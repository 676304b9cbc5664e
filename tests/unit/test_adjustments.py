"""The pure difference between what was billed for a period and what it is re-rated to,
and the corrected tariff catalog."""

from __future__ import annotations

import copy
from datetime import date
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from billing.adjustments import PREFIX, difference_lines
from billing.calculation import InvoiceLine
from billing.tariff_corrections import TariffCorrection, corrected_catalog, corrections_for
from rating.catalog import Catalog, parse_tariff
from rating.money import line_amount_fen
from tests.integration.test_close import CATALOG

VAT = Decimal("17")


def energy(qty: int, price: int = 157_800, component: str = "energy_vt_higher",
           register: str = "1.8.1", description: str = "Električna energija VT") -> InvoiceLine:
    return InvoiceLine("electricity", "MP1", component, register, description, qty, "kWh",
                       price, line_amount_fen(qty, price), VAT)


def test_nothing_changed_gives_no_lines() -> None:
    billed = [energy(100_000), energy(54_792, description="Električna energija VT (procjena)")]
    assert difference_lines("2026-03", billed, [energy(154_792)]) == []


def test_estimate_replaced_by_actual_gives_the_quantity_and_amount_difference() -> None:
    billed = [energy(100_000), energy(54_792, description="Električna energija VT (procjena)")]
    lines = difference_lines("2026-03", billed, [energy(141_905)])
    assert len(lines) == 1
    ln = lines[0]
    assert (ln.component, ln.register, ln.quantity_milli, ln.unit_price_micro) == (
        PREFIX + "energy_vt_higher", "1.8.1", -12_887, 157_800)
    # the amount brings the billed amounts to the re-rated one exactly
    assert ln.amount_fen == line_amount_fen(141_905, 157_800) - 1578 - 865
    assert ln.description == ("Korekcija za 2026-03: Električna energija VT — obračunato"
                              " 154.792 kWh, prema očitanjima 141.905 kWh")
    assert (ln.service, ln.vat_rate, ln.metering_point_id) == ("electricity", VAT, "MP1")


def test_earlier_adjustments_count_as_billed() -> None:
    first = difference_lines("2026-03", [energy(100_000)], [energy(120_000)])
    assert difference_lines("2026-03", [energy(100_000), *first], [energy(120_000)]) == []
    second = difference_lines("2026-03", [energy(100_000), *first], [energy(110_000)])
    assert [ln.quantity_milli for ln in second] == [-10_000]


def test_a_price_correction_credits_the_old_price_and_bills_the_new() -> None:
    lines = difference_lines("2026-03", [energy(100_000)], [energy(100_000, price=150_000)],
                             tariff_note="ispravka #1: pogrešna cijena")
    assert [(ln.quantity_milli, ln.unit_price_micro, ln.amount_fen) for ln in lines] == [
        (100_000, 150_000, 1500), (-100_000, 157_800, -1578)]
    assert lines[0].description.startswith("Ispravka cijene za 2026-03: Električna energija VT"
                                           " — 100.000 kWh po 0.15 KM")
    assert "storno 100.000 kWh po 0.1578 KM" in lines[1].description
    assert all("pogrešna cijena" in ln.description for ln in lines)


def test_lines_keep_their_service_register_and_order() -> None:
    water = InvoiceLine("water", "MP1", "water_sewage", "8.0", "Voda", 2000, "m3", 1_068_376,
                        line_amount_fen(2000, 1_068_376), VAT)
    mt = energy(5_000, price=78_900, component="energy_mt_higher", register="1.8.2")
    lines = difference_lines("2026-03", [], [water, mt, energy(1000)])
    assert [(ln.service, ln.register) for ln in lines] == [
        ("electricity", "1.8.1"), ("electricity", "1.8.2"), ("water", "8.0")]
    assert "m³" in lines[2].description


@given(st.lists(st.integers(min_value=0, max_value=500_000), min_size=2, max_size=6))
def test_any_chain_of_corrections_ends_at_the_rerated_amount(readings: list[int]) -> None:
    """Re-rating again and again (each time against everything billed so far) always
    leaves exactly the last re-rated quantity and amount billed."""
    billed = [energy(readings[0])]
    for qty in readings[1:]:
        billed += difference_lines("2026-03", billed, [energy(qty)])
        assert sum(ln.quantity_milli for ln in billed) == qty
        assert sum(ln.amount_fen for ln in billed) == line_amount_fen(qty, 157_800)


def corrected_doc(price: str) -> dict[str, object]:
    doc = copy.deepcopy(next(d for d in CATALOG if d["tariff_code"] == "EL-HH"))
    doc["components"][0]["price"] = price
    doc["valid_from"] = "2026-02-01"
    return doc


def test_corrected_catalog_applies_only_in_its_range_and_keeps_the_original() -> None:
    base = Catalog.from_documents(CATALOG)
    corr = TariffCorrection(1, parse_tariff(corrected_doc("0.15")), date(2026, 3, 15), "x")
    cat = corrected_catalog(base, [corr])
    price = [c.price_micro for c in cat.version_on("EL-HH", date(2026, 3, 1)).components][0]
    assert price == 150_000
    for day in (date(2026, 1, 31), date(2026, 3, 16), date(2027, 1, 1)):
        assert cat.version_on("EL-HH", day).components[0].price_micro == 157_800
    assert base.version_on("EL-HH", date(2026, 3, 1)).components[0].price_micro == 157_800
    later = TariffCorrection(2, parse_tariff(corrected_doc("0.16")), date(2026, 2, 28), "y")
    both = corrected_catalog(base, [later, corr])  # applied in the order recorded
    assert both.version_on("EL-HH", date(2026, 2, 10)).components[0].price_micro == 160_000
    assert both.version_on("EL-HH", date(2026, 3, 10)).components[0].price_micro == 150_000
    assert corrections_for([corr], ["EL-HH"], date(2026, 3, 1), date(2026, 4, 1)) == [corr]
    assert corrections_for([corr], ["EL-HH"], date(2026, 3, 16), date(2026, 4, 1)) == []
    assert corrections_for([corr], ["EL-OP"], date(2026, 3, 1), date(2026, 4, 1)) == []


def discount(base: InvoiceLine) -> InvoiceLine:
    amount = base.amount_fen
    return InvoiceLine(base.service, base.metering_point_id, f"{base.component}_discount",
                       base.register, "Popust (socijalna kategorija) 10 %", 10_000, "%",
                       amount * 10_000, -round(amount / 10), VAT)


def test_a_discount_follows_its_line() -> None:
    old, new = energy(100_000), energy(120_000)
    lines = difference_lines("2026-03", [old, discount(old)], [new, discount(new)])
    assert sum(ln.amount_fen for ln in lines) == (new.amount_fen + discount(new).amount_fen
                                                  - old.amount_fen - discount(old).amount_fen)
    texts = [ln.description for ln in lines if ln.unit == "%"]
    assert texts == ["Korekcija za 2026-03: Popust (socijalna kategorija) 10 % na 15.78 KM"
                     " — storno",
                     "Korekcija za 2026-03: Popust (socijalna kategorija) 10 % na 18.94 KM"]
