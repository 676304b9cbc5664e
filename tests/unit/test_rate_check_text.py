"""The rate check's text and the simulation, pure (no database)."""

from __future__ import annotations

import copy
import json
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from billing import BillingError
from billing.calculation import ContractInput, DailyConsumption, compute_invoice
from billing.rate_check import (
    StoredInvoice,
    StoredLine,
    _dec,
    compare,
    explain,
    given_consumption,
    retariff,
    simulation_text,
)
from rating.catalog import Catalog

DOCS: list[dict[str, Any]] = json.loads(
    (Path(__file__).resolve().parents[2] / "app" / "demo" / "catalog.json").read_text()
)
CATALOG = Catalog.from_documents(DOCS)
MARCH = date(2026, 3, 1)


def household() -> tuple[list[ContractInput], list[DailyConsumption]]:
    contracts = [ContractInput("C1E", "MP1", "electricity", "EL-HH", date(2026, 3, 11), None)]
    rows = [DailyConsumption("MP1", "electricity", "1.8.1", date(2026, 3, 11), 212_345),
            DailyConsumption("MP1", "electricity", "1.8.2", date(2026, 3, 11), 98_765)]
    return contracts, rows


def stored(draft: Any) -> StoredInvoice:
    return StoredInvoice("2026-000007", [
        StoredLine(ln.service, ln.metering_point_id, ln.component, ln.register,
                   ln.quantity_milli, ln.unit_price_micro, ln.amount_fen) for ln in draft.lines
    ], draft.net_fen, draft.vat_fen, draft.total_fen)


def test_steps_of_energy_fee_proration_and_vat() -> None:
    contracts, rows = household()
    draft = compute_invoice("100002", "2026-03", contracts, rows, CATALOG)
    text = explain(draft, contracts, rows, CATALOG)
    assert "contract C1E, tariff EL-HH: 2026-03-11 – 2026-03-31, 21/31 days" in text
    assert "212.345 kWh × 0.1578 = 33.508041 → 33.51" in text
    assert "98.765 kWh × 0.0789 = 7.7925585 → 7.79" in text
    assert "3.50 × 21/31 = ≈2.370968 → 2.37" in text
    # net 33.51 + 7.79 + 2.37 = 43.67; VAT 7.4239 → 7.42
    assert "VAT 17 %: 43.67 × 17 % = 7.4239 → 7.42" in text
    assert text.endswith("total 51.09 KM\nno invoice for this period yet\n")


def test_a_price_change_mid_month_shows_both_versions() -> None:
    doc = copy.deepcopy(next(d for d in DOCS if d["tariff_code"] == "EL-HH"))
    doc["valid_from"] = "2026-03-16"
    doc["components"][-1]["price"] = "4.00"
    catalog = Catalog.from_documents([*DOCS, doc])
    contracts = [ContractInput("C1E", "MP1", "electricity", "EL-HH", date(2025, 1, 1), None)]
    draft = compute_invoice("100001", "2026-03", contracts, [], catalog)
    text = explain(draft, contracts, [], catalog)
    assert "3.50 × 15/31 = ≈1.693548 → 1.69" in text
    assert "4.00 × 16/31 = ≈2.064516 → 2.06" in text
    assert "tariff EL-HH version of 2026-03-16]" in text


def test_compare_matches_or_names_the_differences() -> None:
    contracts, rows = household()
    draft = compute_invoice("100002", "2026-03", contracts, rows, CATALOG)
    assert compare(draft, stored(draft)) == [
        "invoice 2026-000007: matches (3 lines, total 51.09 KM)"]
    old = stored(draft)
    changed = StoredInvoice(old.invoice_number, [
        StoredLine(**{**ln.__dict__, "amount_fen": ln.amount_fen - 1})
        if ln.component == "energy_mt_higher" else ln for ln in old.lines[1:]
    ], old.net_fen, old.vat_fen, old.total_fen + 5)
    text = "\n".join(compare(draft, changed))
    assert "DIFFERS" in text
    assert "energy_vt_higher 1.8.1 @ 0.1578: not on the invoice; re-rated 212.345 → 33.51" in text
    assert ("energy_mt_higher 1.8.2 @ 0.0789: invoice 98.765 → 7.78, re-rated 98.765 → 7.79"
            " (difference 0.01)") in text
    assert "total: invoice 51.14, re-rated 51.09 (difference -0.05)" in text


def test_simulation_lines_and_totals() -> None:
    contracts, rows = household()
    current = compute_invoice("100002", "2026-03", contracts, rows, CATALOG)
    moved = retariff(contracts, "electricity", "EL-OP", CATALOG, "2026-03")
    assert moved[0].tariff_code == "EL-OP" and contracts[0].tariff_code == "EL-HH"
    simulated = compute_invoice("100002", "2026-03", moved, rows, CATALOG)
    text = simulation_text(current, simulated, "title")
    fee = next(ln for ln in text.splitlines() if "metering_point_fee" in ln)
    assert fee.split()[-3:] == ["2.37", "5.42", "3.05"]  # 8.00 × 21/31 = 5.419… → 5.42
    # EL-OP: 40.77 + 9.48 + 5.42 = 55.67 net, VAT 9.4639 → 9.46, total 65.13
    assert text.splitlines()[-1].split() == ["TOTAL", "51.09", "65.13", "14.04"]


def test_bad_tariff_service_and_quantities() -> None:
    contracts, _ = household()
    with pytest.raises(BillingError, match="unknown tariff 'NOPE'"):
        retariff(contracts, "electricity", "NOPE", CATALOG, "2026-03")
    with pytest.raises(BillingError, match="W-HH is a water tariff"):
        retariff(contracts, "electricity", "W-HH", CATALOG, "2026-03")
    with pytest.raises(BillingError, match="no water contract"):
        retariff(contracts, "water", "W-HH", CATALOG, "2026-03")
    with pytest.raises(BillingError, match="period: must be YYYY-MM"):
        retariff(contracts, "electricity", "EL-OP", CATALOG, "2026-3")
    with pytest.raises(BillingError, match="--kwh-vt"):
        given_consumption("2026-03", "EL-OP", "1,5", "0", CATALOG)
    with pytest.raises(BillingError, match="--kwh-vt and --kwh-mt price electricity"):
        given_consumption("2026-03", "W-HH", "1", "0", CATALOG)


def test_given_consumption_on_a_single_rate_tariff() -> None:
    contracts, rows = given_consumption("2026-07", "EL-JR", "100", "50.5", CATALOG)
    assert [(r.register, r.quantity_milli) for r in rows] == [("1.8.0", 150_500)]
    draft = compute_invoice("-", "2026-07", contracts, rows, CATALOG)
    text = explain(draft, contracts, rows, CATALOG, simulation=True)
    assert text.startswith("Simulation without a customer: period 2026-07")
    assert "150.500 kWh × 0.165 = 24.8325 → 24.83" in text


def test_unrounded_amounts() -> None:
    assert _dec(Decimal("33.508041")) == "33.508041"
    assert _dec(Decimal("3.5")) == "3.50"
    assert _dec(Decimal(7) / Decimal(3)) == "≈2.333333"
