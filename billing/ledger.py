"""General ledger (glavna knjiga): the chart of accounts and the posting rules (pure).

A document is booked as one balanced entry (debits = credits, in feninga):

* invoice (on its issue date): debit receivables (2110, with the customer) by the total;
  credit the revenue account of each service by that service's net amount (sum of its
  lines) and VAT payable (4700) by the invoice's VAT;
* payment (on the day paid): debit the account of the channel it came through (bank 2410,
  cash desk 2430) and credit the customer's receivables (2110) by the amount;
* customer credit (`billing.customer_credit`): what a customer paid beyond what they owe
  moves from receivables to customer credit (4310, with the customer): debit 2110, credit
  4310; applying it to an invoice, or a reversal that shrinks it, moves it back; a refund
  debits 4310 and credits the bank;
* a payment reversal (`billing.payment_corrections`) is the storno of the payment's entry.

Invoice lines of the service ``interest`` (late-payment interest) are revenue of the
chart's ``interest_revenue`` account unless the chart maps that service itself.

A negative amount on a side is booked on the other side (a service with negative net is a
debit of revenue), and a zero amount makes no line. Which account each rule uses comes
from the chart (`chart_of_accounts.json` unless another is given). Database work is in
`billing.ledger_posting`, reports in `billing.ledger_reports`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any

from billing import BillingError

DEFAULT_CHART = Path(__file__).with_name("chart_of_accounts.json")
KINDS = ("invoice", "payment", "reversal", "adjustment", "opening")
ACCOUNT_KINDS = ("asset", "liability", "equity", "revenue", "expense")
_ACCOUNT = re.compile(r"^[0-9]{3,10}$")
INTEREST_SERVICE = "interest"  # the service key of late-payment interest lines
_ROLES = ("receivables", "vat_payable", "customer_credit", "write_off", "interest_revenue")


class LedgerError(BillingError):
    """A chart, rule or entry that cannot be booked; the message names the field."""


@dataclass(frozen=True, slots=True)
class Account:
    account: str
    name: str
    kind: str  # asset | liability | equity | revenue | expense


@dataclass(frozen=True)
class Chart:
    accounts: Mapping[str, Account]
    roles: Mapping[str, str]  # receivables, vat_payable, customer_credit, … → account
    revenue: Mapping[str, str]  # service → revenue account
    payment_channels: Mapping[str, str]  # channel → account; "*" for every other channel

    def revenue_account(self, service: str) -> str:
        try:
            return self.revenue[service]
        except KeyError:
            if service == INTEREST_SERVICE:
                return self.roles["interest_revenue"]
            raise LedgerError(f"service: no revenue account for {service!r} in the chart") from None

    def channel_account(self, channel: str) -> str:
        return self.payment_channels.get(channel.strip(), self.payment_channels["*"])


@dataclass(frozen=True, slots=True)
class LineDraft:
    account: str
    debit_fen: int
    credit_fen: int
    customer_id: str | None = None


@dataclass(frozen=True)
class EntryDraft:
    kind: str  # invoice | payment | reversal | adjustment | opening
    source_document: str  # invoice number, payment id, reversed entry number …
    entry_date: date
    description: str
    lines: tuple[LineDraft, ...]

    @property
    def debit_fen(self) -> int:
        return sum(ln.debit_fen for ln in self.lines)

    @property
    def credit_fen(self) -> int:
        return sum(ln.credit_fen for ln in self.lines)


@dataclass(frozen=True)
class InvoiceTotals:
    invoice_number: str
    customer_id: str
    issued_on: date
    net_by_service: Mapping[str, int]  # service → sum of its lines' amounts (feninga)
    vat_fen: int
    total_fen: int


@dataclass(frozen=True)
class PaymentFacts:
    payment_id: str
    customer_id: str
    paid_on: date
    amount_fen: int
    channel: str
    invoice_number: str | None = None  # the invoice its reference names, if any


# ---- chart --------------------------------------------------------------------------


@lru_cache(maxsize=8)
def load_chart(path: Path | None = None) -> Chart:
    """The chart in `path` (JSON), by default the packaged `chart_of_accounts.json`."""
    source = path or DEFAULT_CHART
    try:
        doc = json.loads(Path(source).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LedgerError(f"chart of accounts {source.name}: {exc}") from exc
    return parse_chart(doc)


def parse_chart(doc: Any) -> Chart:
    """Validate a chart document; every error names its field."""
    if not isinstance(doc, Mapping) or not isinstance(doc.get("accounts"), list):
        raise LedgerError("accounts: the chart needs a list of accounts")
    accounts: dict[str, Account] = {}
    for i, item in enumerate(doc["accounts"]):
        where = f"accounts[{i}]"
        if not isinstance(item, Mapping):
            raise LedgerError(f"{where}: must be an object")
        number, name, kind = item.get("account"), item.get("name"), item.get("kind")
        if not isinstance(number, str) or not _ACCOUNT.match(number):
            raise LedgerError(f"{where}.account: must be 3–10 digits, got {number!r}")
        if number in accounts:
            raise LedgerError(f"{where}.account: {number} is listed twice")
        if not isinstance(name, str) or not 1 <= len(name.strip()) <= 200:
            raise LedgerError(f"{where}.name: 1–200 characters required")
        if kind not in ACCOUNT_KINDS:
            raise LedgerError(f"{where}.kind: must be one of {', '.join(ACCOUNT_KINDS)}")
        accounts[number] = Account(number, name.strip(), kind)
    posting = doc.get("posting")
    if not isinstance(posting, Mapping):
        raise LedgerError("posting: the chart needs posting rules")

    def known(field: str, value: Any) -> str:
        if not isinstance(value, str) or value not in accounts:
            raise LedgerError(f"posting.{field}: {value!r} is not an account of the chart")
        return value

    roles = {role: known(role, posting.get(role)) for role in _ROLES}
    revenue, channels = posting.get("revenue"), posting.get("payment_channels")
    if not isinstance(revenue, Mapping) or not revenue:
        raise LedgerError("posting.revenue: a revenue account per service is required")
    if not isinstance(channels, Mapping) or "*" not in channels:
        raise LedgerError("posting.payment_channels: needs a '*' account for other channels")
    return Chart(
        accounts=accounts,
        roles=roles,
        revenue={s: known(f"revenue.{s}", a) for s, a in revenue.items()},
        payment_channels={c: known(f"payment_channels.{c}", a) for c, a in channels.items()},
    )


# ---- posting rules ------------------------------------------------------------------


def _debit(account: str, amount_fen: int, customer_id: str | None = None) -> list[LineDraft]:
    if amount_fen > 0:
        return [LineDraft(account, amount_fen, 0, customer_id)]
    if amount_fen < 0:
        return [LineDraft(account, 0, -amount_fen, customer_id)]
    return []


def _credit(account: str, amount_fen: int, customer_id: str | None = None) -> list[LineDraft]:
    return _debit(account, -amount_fen, customer_id)


def entry_for_invoice(inv: InvoiceTotals, *, chart: Chart) -> EntryDraft | None:
    """The invoice's entry; None for an invoice whose every amount is zero (nothing to book).
    Raises `LedgerError` if the total is not the nets plus VAT or a service has no account."""
    net = sum(inv.net_by_service.values())
    if net + inv.vat_fen != inv.total_fen:
        raise LedgerError(
            f"invoice {inv.invoice_number}: total {inv.total_fen} ≠ net {net} + VAT {inv.vat_fen}"
        )
    lines = _debit(chart.roles["receivables"], inv.total_fen, inv.customer_id)
    revenue = sorted((chart.revenue_account(s), s) for s in inv.net_by_service)
    for account, service in revenue:  # in account order
        lines += _credit(account, inv.net_by_service[service])
    lines += _credit(chart.roles["vat_payable"], inv.vat_fen)
    if not lines:
        return None
    return EntryDraft("invoice", inv.invoice_number, inv.issued_on,
                      f"Račun {inv.invoice_number}", tuple(lines))


def entry_for_payment(p: PaymentFacts, *, chart: Chart) -> EntryDraft:
    """Debit the channel's account, credit the customer's receivables."""
    if p.amount_fen <= 0:
        raise LedgerError(f"payment {p.payment_id}: amount must be above zero")
    about = f" za račun {p.invoice_number}" if p.invoice_number else ""
    return EntryDraft(
        "payment", p.payment_id, p.paid_on, f"Uplata {p.payment_id}{about}"[:200],
        (LineDraft(chart.channel_account(p.channel), p.amount_fen, 0),
         LineDraft(chart.roles["receivables"], 0, p.amount_fen, p.customer_id)),
    )


def entry_for_credit_move(
    move_id: int, customer_id: str, amount_fen: int, on: date, description: str, *,
    chart: Chart, counter_account: str | None = None,
) -> EntryDraft:
    """A movement of customer credit: `amount_fen` > 0 moves it from receivables into
    customer credit (4310), < 0 takes it out to receivables, or to `counter_account` (the
    bank, for a refund)."""
    if amount_fen == 0:
        raise LedgerError(f"credit move {move_id}: amount must not be zero")
    counter = counter_account or chart.roles["receivables"]
    with_customer = customer_id if counter == chart.roles["receivables"] else None
    credit = chart.roles["customer_credit"]
    lines = [*_debit(counter, amount_fen, with_customer), *_credit(credit, amount_fen, customer_id)]
    lines.sort(key=lambda ln: ln.debit_fen == 0)  # the debit first
    return EntryDraft("adjustment", f"AVANS-{move_id}", on, description[:200], tuple(lines))


def reversal_of(entry_number: str, entry: EntryDraft, *, on: date) -> EntryDraft:
    """The entry that cancels a posted one (storno): same lines, sides swapped."""
    return EntryDraft(
        "reversal", entry_number, on, f"Storno {entry_number}"[:200],
        tuple(LineDraft(ln.account, ln.credit_fen, ln.debit_fen, ln.customer_id)
              for ln in entry.lines),
    )


def check_entry(entry: EntryDraft, chart: Chart) -> None:
    """Refuse what the database would refuse, with a readable reason, before writing."""
    who = f"entry for {entry.kind} {entry.source_document!r}"
    if entry.kind not in KINDS:
        raise LedgerError(f"{who}: kind must be one of {', '.join(KINDS)}")
    if not 1 <= len(entry.source_document) <= 100:
        raise LedgerError(f"{who}: source_document must have 1–100 characters")
    if len(entry.lines) < 2:
        raise LedgerError(f"{who}: needs at least two lines")
    for i, ln in enumerate(entry.lines, start=1):
        if ln.account not in chart.accounts:
            raise LedgerError(f"{who}: line {i}: account {ln.account} is not in the chart")
        if min(ln.debit_fen, ln.credit_fen) < 0 or (ln.debit_fen > 0) == (ln.credit_fen > 0):
            raise LedgerError(f"{who}: line {i}: exactly one of debit and credit must be > 0")
    if entry.debit_fen != entry.credit_fen:
        raise LedgerError(f"{who}: debits {entry.debit_fen} ≠ credits {entry.credit_fen}")
