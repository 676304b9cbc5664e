"""The calculation's speed-ups (memos per tariff version, `_render`'s fast path) change no
result: drafts of a varied fixture — every demo tariff, tiers, billing power, reactive
energy, minimum charge, social discount, a price change on the 15th, contracts starting and
ending inside the month, the 1 April season change — rendered as the close writes them are
compared with a digest of the same drafts made by the code before the speed-up."""

from __future__ import annotations

import copy
import hashlib
import json
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from billing import calculation
from billing.calculation import ContractInput, DailyConsumption, InvoiceDraft, compute_invoice
from billing.close_copy import _render, _text
from rating.catalog import Catalog, parse_tariff
from rating.money import vat_fen
from tests.unit.test_calculation_depth import DEPTH_DOCS

DEMO = json.loads((Path(__file__).parents[2] / "app" / "demo" / "catalog.json")
                  .read_text(encoding="utf-8"))
# made with the code before the speed-up (commit b0d73b7)
EXPECTED_SHA256 = "95dc38a7bfc753ab680f7fbe5eba21dd2efffd513197494eae52de1bddccec59"
REGISTERS = {"EL-HH": ("1.8.1", "1.8.2"), "EL-OP": ("1.8.1", "1.8.2"), "EL-JR": ("1.8.0",),
             "EL-10KV": ("1.8.1", "1.8.2", "3.8.0"), "EL-HH-SOC": ("1.8.1", "1.8.2"),
             "EL-MIN": ("1.8.0",)}


def _catalog() -> Catalog:
    """Demo and depth tariffs, with new prices from the 15th of March for W-HH and W-TIER."""
    cat = Catalog.from_documents([*DEMO, *DEPTH_DOCS])
    for code, change in (("W-HH", {"price": "1.20"}), ("W-TIER", {"price": "3.00"})):
        doc = copy.deepcopy(next(d for d in [*DEMO, *DEPTH_DOCS] if d["tariff_code"] == code))
        doc["valid_from"] = "2026-03-15"
        for comp in doc["components"]:
            if comp["kind"] == "fixed_monthly":
                comp.update(change)
            for tier in comp.get("tiers", ()):
                tier["up_to"] = tier["up_to"] and str(int(tier["up_to"]) + 5)
        cat.add(parse_tariff(doc))
    return cat


_Case = tuple[str, str, list[ContractInput], list[DailyConsumption], list[DailyConsumption]]


def _cases() -> list[_Case]:
    cat = _catalog()
    out: list[_Case] = []
    spans = (("2025-01-01", None), ("2026-03-11", None), ("2025-01-01", "2026-03-20"))
    for n, (code, versions) in enumerate(sorted(cat.versions.items())):
        service = versions[0].service
        for period in ("2026-03", "2026-04"):
            first = date.fromisoformat(period + "-01")
            for k, (start, end) in enumerate(spans):
                size = (n * 7 + k * 13) % 9
                mp = f"MP-{code}-{k}"
                c = ContractInput(f"C-{code}-{k}", mp, service, code, date.fromisoformat(start),
                                  date.fromisoformat(end) if end else None,
                                  Decimal("123.45") if service == "waste" else None,
                                  3 if service != "electricity" else None)
                regs = REGISTERS.get(code, ("8.0",)) if service != "waste" else ()
                rows = [DailyConsumption(mp, service, reg, first + timedelta(days=d),
                                         (size + 1) * 997 * (r + 1) + d * 31)
                        for r, reg in enumerate(regs) for d in range(30)]
                peaks = ([DailyConsumption(mp, "electricity", "1.6.0", first + timedelta(days=3),
                                           1000 * (5 + 4 * size))]
                         if code == "EL-10KV" and k != 1 else [])
                out.append((f"{100000 + len(out)}", period, [c], rows, peaks))
    return out


def _digest(drafts: list[InvoiceDraft]) -> str:
    text = "\n".join(repr(_render(d)) + "\n" + repr(d) for d in drafts)
    return hashlib.sha256(text.encode()).hexdigest()


def _drafts() -> list[InvoiceDraft]:
    cat = _catalog()
    return [compute_invoice(cid, period, cs, rows, cat, peaks)
            for cid, period, cs, rows, peaks in _cases()]


def test_drafts_as_before_the_speed_up() -> None:
    drafts = _drafts()
    assert len(drafts) == 78 and sum(len(d.lines) for d in drafts) == 180
    assert _digest(drafts) == EXPECTED_SHA256


def test_memos_warm_or_cold_give_the_same_drafts() -> None:
    warm = _drafts()
    for memo in (calculation._ENERGY_MEMO, calculation._FEES_MEMO, calculation._FIGURES_MEMO,
                 calculation._SPAN_FEES, calculation._WHOLE_RATES):
        memo.clear()
    assert _digest(_drafts()) == _digest(warm)


def test_a_version_added_to_a_catalog_is_priced_anew() -> None:
    """The memos are keyed by the (immutable) tariff version, not the (mutable) catalog."""
    cat = Catalog.from_documents(DEMO)
    c = ContractInput("C", "MP", "water", "W-HH", date(2025, 1, 1), None)
    rows = [DailyConsumption("MP", "water", "8.0", date(2026, 3, 20), 10_000)]
    before = compute_invoice("1", "2026-03", [c], rows, cat)
    doc = copy.deepcopy(next(d for d in DEMO if d["tariff_code"] == "W-HH"))
    doc["valid_from"] = "2026-03-15"
    doc["components"][0]["price"] = "2.00"
    cat.add(parse_tariff(doc))
    after = compute_invoice("1", "2026-03", [c], rows, cat)
    assert [ln.amount_fen for ln in before.lines][0] == 1068  # 10 m³ × 1.068376
    assert [ln.amount_fen for ln in after.lines][0] == 2000  # 10 m³ × 2.00


def test_render_fast_path_equals_the_escaping_one() -> None:
    drafts = _drafts()
    for d in drafts:
        lines = _render(d).lines.split("\n") if d.lines else []
        for no, (text, ln) in enumerate(zip(lines, d.lines, strict=True), start=1):
            fields = (no, ln.service, ln.metering_point_id, ln.component, ln.register,
                      ln.description, ln.quantity_milli, ln.unit, ln.unit_price_micro,
                      ln.amount_fen, ln.vat_rate)
            assert text == "\t".join(_text(f) for f in fields)


@given(st.integers(-10**22, 10**22), st.sampled_from(["17", "0", "17.00", "1E+1", "7.5", "0.01"]))
def test_vat_in_integers_is_vat_fen(base: int, rate: str) -> None:
    assert calculation._vat_fen(base, Decimal(rate)) == vat_fen(base, Decimal(rate))


def test_render_escapes_what_needs_it_as_field_by_field() -> None:
    """`_render` formats a draft without escaping and checks the text as a whole: a field
    with a backslash, tab, newline, carriage return, NULL or the text "None" sends the whole
    draft the careful way, which gives the same text as escaping every field."""
    base = _drafts()[0]
    odd = ("a\\b", "a\tb", "a\nb", "a\rb", "None of it", "\\N", "")
    for field in ("service", "metering_point_id", "component", "register", "description",
                  "unit"):
        for value in (*odd, None):
            if value is None and field != "register" and field != "description":
                continue
            lines = [copy.copy(ln) for ln in base.lines]
            setattr(lines[-1], field, value)
            d = InvoiceDraft(base.customer_id, base.period, lines, base.vat, base.net_fen,
                             base.vat_fen, base.total_fen)
            expected = "\n".join(
                "\t".join(_text(f) for f in (
                    no, ln.service, ln.metering_point_id, ln.component, ln.register,
                    ln.description, ln.quantity_milli, ln.unit, ln.unit_price_micro,
                    ln.amount_fen, ln.vat_rate))
                for no, ln in enumerate(lines, start=1))
            assert _render(d).lines == expected, (field, value)
