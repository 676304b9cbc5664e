"""Whole customers as a close sees them — several contracts each (electricity, water, waste,
in any order), month totals or day rows — give the same drafts, rendered text and error
messages as the code before the second speed-up (issue #5): a digest made with that code.

The fixture mixes the common shape (one contract per metering point and service, the whole
month) with every path off it: two contracts following each other on one metering point,
contracts starting or ending inside the month, energy and fee prices changing on the 10th
and 15th, tiers, billing power, reactive energy, minimum charge, social discount, a VAT rate
of its own, rows on days or metering points no contract covers, zero rows, and customers
that cannot be invoiced (overlapping contracts, no area for a per-m² fee, a register without
a price, a tariff without a version in force), each with `metered_only` too."""

from __future__ import annotations

import copy
import hashlib
import random
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest

from billing import BillingError, calculation
from billing.calculation import ContractInput, DailyConsumption, InvoiceDraft, compute_invoice
from billing.close_copy import _render
from billing.close_inputs import _CachedCatalog
from rating.catalog import Catalog, parse_tariff
from tests.unit.test_calculation_depth import DEPTH_DOCS
from tests.unit.test_calculation_speedups import DEMO

# made with the code before the second speed-up (commit df62ca6)
EXPECTED_SHA256 = "c066a17584e77a1a0db6097ef272f0da006f52baeca1b90e15a0d84a1804ba3f"
EXPECTED_COUNTS = (408, 1793, 72)  # drafts, their lines, errors


def catalog() -> Catalog:
    """Demo and depth tariffs; W-HH and W-TIER fees change on 15 March, EL-OP's day energy
    price on 10 March, W-NEW has its first version from 10 March."""
    docs = [*DEMO, *DEPTH_DOCS]
    cat = Catalog.from_documents(docs)

    def changed(code: str, valid_from: str, kind: str, price: str) -> dict[str, object]:
        doc = copy.deepcopy(next(d for d in docs if d["tariff_code"] == code))
        doc["valid_from"] = valid_from
        for comp in doc["components"]:
            if comp["kind"] == kind and "price" in comp:
                comp["price"] = price
            for tier in comp.get("tiers", ()):
                tier["up_to"] = tier["up_to"] and str(int(tier["up_to"]) + 5)
        return doc

    for doc in (changed("W-HH", "2026-03-15", "fixed_monthly", "1.20"),
                changed("W-TIER", "2026-03-15", "fixed_monthly", "3.00"),
                changed("EL-OP", "2026-03-10", "energy", "0.2000")):
        cat.add(parse_tariff(doc))
    new = changed("W-BU", "2026-03-10", "energy", "1.50")
    new["tariff_code"] = "W-NEW"
    cat.add(parse_tariff(new))
    return cat


_REGISTERS = {"EL-HH": ("1.8.1", "1.8.2"), "EL-OP": ("1.8.1", "1.8.2"), "EL-JR": ("1.8.0",),
              "EL-10KV": ("1.8.1", "1.8.2", "3.8.0"), "EL-HH-SOC": ("1.8.1", "1.8.2"),
              "EL-MIN": ("1.8.0",)}
_EL = ("EL-HH", "EL-HH", "EL-HH", "EL-OP", "EL-JR", "EL-10KV", "EL-HH-SOC", "EL-MIN")
_WATER = ("W-HH", "W-HH", "W-VS", "W-BU", "W-TIER", "W-VOL", "W-NEW")
_WASTE = ("WA-HH", "WA-HH", "WA-BU")

Case = tuple[str, str, list[ContractInput], list[DailyConsumption], list[DailyConsumption]]


def cases(n: int = 240, seed: int = 5, *, common: bool = False) -> list[Case]:
    """`common`: the shape of most customers (one contract per service for the whole month,
    no depth tariff, month totals), as a close sees them."""
    rnd = random.Random(seed)
    out: list[Case] = []
    for i in range(n):
        period = rnd.choice(("2026-03", "2026-03", "2026-04", "2026-10"))
        first = date.fromisoformat(period + "-01")
        days = 30 if period == "2026-04" else 31
        cid = str(200000 + i)
        contracts: list[ContractInput] = []
        rows: list[DailyConsumption] = []
        peaks: list[DailyConsumption] = []
        shared_mp = rnd.random() < 0.7
        for service, tariffs in (("electricity", _EL), ("water", _WATER), ("waste", _WASTE)):
            if rnd.random() < 0.1:
                continue
            mp = f"MM-{cid}" if shared_mp else f"MM-{cid}-{service[:2]}"
            pieces: list[tuple[date, date | None]] = [(date(2025, 1, 1), None)]
            shape = 1.0 if common else rnd.random()
            if shape < 0.08:  # two contracts following each other on the point
                cut = first + timedelta(days=rnd.randrange(1, days))
                pieces = [(date(2025, 1, 1), cut - timedelta(days=1)), (cut, None)]
            elif shape < 0.12:
                pieces = [(first + timedelta(days=rnd.randrange(0, days)), None)]
            elif shape < 0.16:
                pieces = [(date(2025, 1, 1), first + timedelta(days=rnd.randrange(0, days)))]
            elif shape < 0.18:  # overlapping: cannot be invoiced
                pieces = [(date(2025, 1, 1), first + timedelta(days=20)),
                          (first + timedelta(days=10), None)]
            for k, (start, end) in enumerate(pieces):
                tariff = rnd.choice(tariffs[:4] if common else tariffs)
                area = (None if rnd.random() < 0.05 else
                        Decimal(rnd.choice(("123.45", "80", "0", "1000.5"))))
                contracts.append(ContractInput(f"{cid}-{service[:3]}-{k}", mp, service, tariff,
                                               start, end,
                                               area if service == "waste" else None,
                                               rnd.choice((None, 3))))
                if tariff == "EL-10KV" and rnd.random() < 0.8:
                    peaks.append(DailyConsumption(mp, service, "1.6.0",
                                                  max(start, first) + timedelta(days=2),
                                                  rnd.randrange(1000, 60_000)))
            tariff_regs = {_REGISTERS.get(c.tariff_code, ("8.0",)) for c in contracts
                           if c.service == service}
            registers = sorted({r for regs in tariff_regs for r in regs})
            if service == "waste":
                registers = []
            elif rnd.random() < 0.03 and not common:
                registers.append("1.8.0" if service == "electricity" else "9.9")  # no price
            totals = common or rnd.random() < 0.6
            for reg in registers:
                if totals:  # the month's total, on the first day with a row
                    day = first + timedelta(days=rnd.choice((0, 0, 0, 3)))
                    rows.append(DailyConsumption(mp, service, reg, day,
                                                 rnd.choice((0, rnd.randrange(1, 900_000)))))
                else:
                    for d in range(days):
                        if rnd.random() < 0.9:
                            rows.append(DailyConsumption(mp, service, reg,
                                                         first + timedelta(days=d),
                                                         rnd.randrange(0, 40_000)))
        if rnd.random() < 0.1:  # consumption no contract of this customer covers
            rows.append(DailyConsumption(f"MM-X-{cid}", "water", "8.0", first, 5_000))
        rnd.shuffle(contracts)
        if rnd.random() < 0.5:
            rnd.shuffle(rows)
        out.append((cid, period, contracts, rows, peaks))
    return out


def outcome(cat: Catalog, case: Case, metered_only: bool) -> str:
    cid, period, contracts, rows, peaks = case
    try:
        d = compute_invoice(cid, period, contracts, rows, cat, peaks, metered_only=metered_only)
    except BillingError as exc:
        return f"error {exc}"
    return repr(_render(d)) + "\n" + repr(d)


def digest(cat: Catalog) -> tuple[str, tuple[int, int, int]]:
    texts = [outcome(cat, case, m) for case in cases() for m in (False, True)]
    errors = sum(t.startswith("error ") for t in texts)
    lines = sum(t.count("InvoiceLine(") for t in texts)
    return (hashlib.sha256("\n".join(texts).encode()).hexdigest(),
            (len(texts) - errors, lines, errors))


def test_customers_as_before_the_second_speed_up() -> None:
    assert digest(catalog()) == (EXPECTED_SHA256, EXPECTED_COUNTS)


def test_the_close_catalog_and_cold_memos_give_the_same() -> None:
    warm = digest(catalog())
    for memo in (calculation._ENERGY_MEMO, calculation._FEES_MEMO, calculation._FIGURES_MEMO,
                 calculation._SPAN_FEES, calculation._WHOLE_RATES):
        memo.clear()
    assert digest(_CachedCatalog(catalog())) == warm


def test_the_fixture_reaches_the_paths_it_names() -> None:
    texts = [outcome(catalog(), case, False) for case in cases()]
    joined = "\n".join(texts)
    for needle in ("overlap on metering point", "area_m2 is required", "has no energy price",
                   "no version in force", "_discount", "Obračunska snaga", "dana)",
                   "(10.03.–", "Minimalni", "vat_rate=Decimal('0')"):
        assert needle in joined, needle


def test_the_short_path_gives_what_the_general_path_gives(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every customer of the fixture and of the close-like shape, with the short path for
    the common customer (`_simple_invoice`) and with the general path only."""
    cat = catalog()
    taken = 0
    short = calculation._simple_invoice

    def counted(*args: Any) -> InvoiceDraft | None:
        nonlocal taken
        draft = short(*args)
        taken += draft is not None
        return draft

    monkeypatch.setattr(calculation, "_simple_invoice", counted)
    everyone = [*cases(), *cases(200, seed=11, common=True)]
    with_short = [outcome(cat, case, False) for case in everyone]
    assert taken > 200
    monkeypatch.setattr(calculation, "_simple_invoice", lambda *args: None)
    assert [outcome(cat, case, False) for case in everyone] == with_short
