"""Posting rules and the chart of accounts (pure)."""

from __future__ import annotations

import copy
import json
from datetime import date
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.ledger import (
    DEFAULT_CHART,
    EntryDraft,
    InvoiceTotals,
    LedgerError,
    LineDraft,
    PaymentFacts,
    check_entry,
    entry_for_invoice,
    entry_for_payment,
    load_chart,
    parse_chart,
    reversal_of,
)

CHART = load_chart()
APRIL_1 = date(2026, 4, 1)


def lines(entry: EntryDraft | None) -> list[tuple[str, int, int, str | None]]:
    assert entry is not None
    return [(ln.account, ln.debit_fen, ln.credit_fen, ln.customer_id) for ln in entry.lines]


def test_invoice_entry_splits_revenue_per_service_and_vat() -> None:
    # invoice 2026-000001 of tests/integration/test_close.py, lines summed per service:
    # electricity 33.51 + 7.79 + 3.50, water 13.35 + 2.50, waste 9.00; VAT 11.84
    inv = InvoiceTotals("2026-000001", "100001", APRIL_1,
                        {"water": 1585, "electricity": 4480, "waste": 900}, 1184, 8149)
    entry = entry_for_invoice(inv, chart=CHART)
    assert entry is not None
    assert (entry.kind, entry.source_document, entry.entry_date) == (
        "invoice", "2026-000001", APRIL_1)
    assert entry.description == "Račun 2026-000001"
    assert lines(entry) == [
        ("2110", 8149, 0, "100001"),
        ("6010", 0, 4480, None), ("6011", 0, 1585, None), ("6012", 0, 900, None),
        ("4700", 0, 1184, None),
    ]
    assert entry.debit_fen == entry.credit_fen == 8149
    check_entry(entry, CHART)


def test_negative_service_net_is_a_debit_and_zero_makes_no_line() -> None:
    inv = InvoiceTotals("2026-000009", "100001", APRIL_1,
                        {"electricity": 1000, "water": -200, "waste": 0}, 136, 936)
    assert lines(entry_for_invoice(inv, chart=CHART)) == [
        ("2110", 936, 0, "100001"), ("6010", 0, 1000, None), ("6011", 200, 0, None),
        ("4700", 0, 136, None)]


def test_zero_invoice_books_nothing() -> None:
    inv = InvoiceTotals("2026-000010", "100001", APRIL_1, {"waste": 0}, 0, 0)
    assert entry_for_invoice(inv, chart=CHART) is None


def test_invoice_whose_total_is_not_net_plus_vat_is_refused() -> None:
    inv = InvoiceTotals("2026-000011", "100001", APRIL_1, {"water": 1000}, 170, 1171)
    with pytest.raises(LedgerError, match=r"total 1171 ≠ net 1000 \+ VAT 170"):
        entry_for_invoice(inv, chart=CHART)


def test_service_without_revenue_account_is_named() -> None:
    inv = InvoiceTotals("2026-000012", "100001", APRIL_1, {"heating": 1000}, 170, 1170)
    with pytest.raises(LedgerError, match="no revenue account for 'heating'"):
        entry_for_invoice(inv, chart=CHART)


def test_payment_by_channel() -> None:
    bank = entry_for_payment(PaymentFacts("BANK-1", "100001", date(2026, 4, 10), 5000, "bank",
                                          "2026-000001"), chart=CHART)
    assert lines(bank) == [("2410", 5000, 0, None), ("2110", 0, 5000, "100001")]
    assert bank.description == "Uplata BANK-1 za račun 2026-000001"
    assert (bank.kind, bank.entry_date) == ("payment", date(2026, 4, 10))
    cash = entry_for_payment(PaymentFacts("BL-7", "100001", date(2026, 4, 10), 99, "cash_desk"),
                             chart=CHART)
    assert lines(cash)[0] == ("2430", 99, 0, None)
    with pytest.raises(LedgerError, match="above zero"):
        entry_for_payment(PaymentFacts("X", "100001", APRIL_1, 0, "bank"), chart=CHART)


def test_reversal_swaps_sides() -> None:
    entry = entry_for_payment(PaymentFacts("B-2", "100002", APRIL_1, 462, "bank"), chart=CHART)
    storno = reversal_of("2026-000004", entry, on=date(2026, 4, 12))
    assert (storno.kind, storno.source_document, storno.entry_date) == (
        "reversal", "2026-000004", date(2026, 4, 12))
    assert lines(storno) == [("2410", 0, 462, None), ("2110", 462, 0, "100002")]


@pytest.mark.parametrize(("entry_lines", "why"), [
    ((LineDraft("2110", 100, 0),), "at least two lines"),
    ((LineDraft("2110", 100, 0), LineDraft("6010", 0, 99)), "debits 100 ≠ credits 99"),
    ((LineDraft("2110", 100, 0), LineDraft("9999", 0, 100)), "account 9999 is not in the chart"),
    ((LineDraft("2110", 100, 100), LineDraft("6010", 0, 0)), "line 1: exactly one"),
    ((LineDraft("2110", -5, 0), LineDraft("6010", 0, -5)), "line 1: exactly one"),
])
def test_check_entry_refuses(entry_lines: tuple[LineDraft, ...], why: str) -> None:
    with pytest.raises(LedgerError, match=why):
        check_entry(EntryDraft("adjustment", "A-1", APRIL_1, "", entry_lines), CHART)


def test_check_entry_refuses_unknown_kind() -> None:
    entry = EntryDraft("gift", "A-1", APRIL_1, "",
                       (LineDraft("2110", 1, 0), LineDraft("6010", 0, 1)))
    with pytest.raises(LedgerError, match="kind must be one of"):
        check_entry(entry, CHART)


@given(
    nets=st.dictionaries(st.sampled_from(["electricity", "water", "waste"]),
                         st.integers(-10**9, 10**9), min_size=1),
    vat=st.integers(0, 10**8),
)
def test_every_invoice_entry_balances(nets: dict[str, int], vat: int) -> None:
    inv = InvoiceTotals("2026-000001", "100001", APRIL_1, nets, vat, sum(nets.values()) + vat)
    entry = entry_for_invoice(inv, chart=CHART)
    if entry is None:
        assert all(v == 0 for v in nets.values()) and vat == 0
        return
    assert entry.debit_fen == entry.credit_fen
    assert all((ln.debit_fen > 0) != (ln.credit_fen > 0) for ln in entry.lines)
    receivable = sum(ln.debit_fen - ln.credit_fen for ln in entry.lines if ln.account == "2110")
    assert receivable == inv.total_fen


def _chart_doc() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DEFAULT_CHART.read_text(encoding="utf-8"))
    return doc


def test_default_chart() -> None:
    assert CHART.roles["receivables"] == "2110"
    assert CHART.accounts["2410"].name == "Žiro račun"
    assert CHART.revenue == {"electricity": "6010", "water": "6011", "waste": "6012"}
    assert CHART.channel_account("posta") == "2410"
    assert parse_chart(_chart_doc()) == CHART


@pytest.mark.parametrize(("edit", "why"), [
    (lambda d: d["accounts"].append(dict(d["accounts"][0])), r"accounts\[10\].account: 2110 is"),
    (lambda d: d["accounts"][1].update(account="21x"), r"accounts\[1\].account: must be 3–10"),
    (lambda d: d["accounts"][2].update(kind="cash"), r"accounts\[2\].kind"),
    (lambda d: d["accounts"][3].update(name=" "), r"accounts\[3\].name"),
    (lambda d: d["posting"].update(vat_payable="4701"), "posting.vat_payable: '4701' is not"),
    (lambda d: d["posting"]["revenue"].update(water="6099"), "posting.revenue.water"),
    (lambda d: d["posting"]["payment_channels"].pop("*"), "payment_channels: needs a '\\*'"),
    (lambda d: d.pop("posting"), "posting: the chart needs posting rules"),
    (lambda d: d.update(accounts={}), "accounts: the chart needs a list"),
])
def test_bad_chart_names_the_field(edit: Any, why: str) -> None:
    doc = copy.deepcopy(_chart_doc())
    edit(doc)
    with pytest.raises(LedgerError, match=why):
        parse_chart(doc)
