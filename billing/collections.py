"""Collections ladder rules (pure): reminder (opomena) → second reminder with disconnection
warning → disconnection order (isključenje) → legal case (tužba).

The ladder is a JSON document (`collections_ladder.json` unless another is given). An
account moves at most one step per daily run, when the step's conditions all hold:

* the oldest overdue invoice is at least ``days_overdue`` days past its due date;
* the overdue principal (FIFO, invoices only; interest and fees do not drive the ladder)
  is at least ``min_amount``;
* at least ``wait_days`` passed since the previous step (gives the letter time to work).

Nothing overdue any more (paid in full) puts the account back to ``current``. An active
payment plan (reprogram) suspends the ladder; a breached plan lets it go on from where it
stood. Extra ledger accounts the collections need (write-off expense, legal costs,
reconnection revenue) are declared in the ladder document and merged into the chart.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import Any

from billing import BillingError
from billing.interest import RatePeriod, check_rates
from billing.ledger import Account, Chart, parse_chart
from rating.money import parse_amount_fen

DEFAULT_LADDER = Path(__file__).with_name("collections_ladder.json")
STAGES = ("current", "reminder", "warning", "disconnection", "legal")
CLEARED = "cleared"
ACTIVE, COMPLETED, BREACHED = "active", "completed", "breached"
_POSTING = ("legal_costs", "legal_costs_paid_from", "recovered_costs", "write_off_expense",
            "reconnection_revenue")


@dataclass(frozen=True, slots=True)
class LadderStep:
    step: str
    days_overdue: int
    min_amount_fen: int
    wait_days: int
    pay_within_days: int


@dataclass(frozen=True)
class Ladder:
    steps: tuple[LadderStep, ...]
    rates: tuple[RatePeriod, ...]
    plan_grace_days: int
    court: str
    reconnection_fees_fen: Mapping[str, int]  # where (meter | pole) → fee incl. VAT
    fee_vat_percent: Decimal
    accounts: tuple[Account, ...]
    posting: Mapping[str, str]

    def step(self, name: str) -> LadderStep:
        return next(s for s in self.steps if s.step == name)


@dataclass(frozen=True, slots=True)
class AccountFacts:
    stage: str  # one of STAGES
    stage_on: date | None
    overdue_fen: int
    days_overdue: int
    plan_active: bool = False


def _int(doc: Mapping[str, Any], key: str, where: str, low: int = 0) -> int:
    value = doc.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= 10_000:
        raise BillingError(f"{where}.{key}: an integer from {low} to 10000 is required")
    return value


def _amount(value: Any, where: str) -> int:
    try:
        fen = parse_amount_fen(value)
    except (ValueError, TypeError, InvalidOperation, BillingError) as exc:
        raise BillingError(f"{where}: not an amount in KM ({exc})") from None
    if fen < 0:
        raise BillingError(f"{where}: must not be negative")
    return fen


def parse_ladder(doc: Any) -> Ladder:
    """Validate a ladder document; every error names its field."""
    if not isinstance(doc, Mapping) or not isinstance(doc.get("steps"), list):
        raise BillingError("steps: the ladder needs a list of steps")
    steps = []
    for i, item in enumerate(doc["steps"]):
        where = f"steps[{i}]"
        if not isinstance(item, Mapping):
            raise BillingError(f"{where}: must be an object")
        expected = STAGES[i + 1] if i + 1 < len(STAGES) else None
        if item.get("step") != expected:
            raise BillingError(f"{where}.step: expected {expected!r} (steps run in ladder order)")
        steps.append(LadderStep(
            str(expected), _int(item, "days_overdue", where), _amount(item.get("min_amount"),
                                                                 f"{where}.min_amount"),
            _int(item, "wait_days", where, 1), _int(item, "pay_within_days", where)))
    if len(steps) != len(STAGES) - 1:
        raise BillingError(f"steps: all of {', '.join(STAGES[1:])} are required")
    rates = []
    for i, r in enumerate(doc.get("interest_rates") or []):
        try:
            rates.append(RatePeriod(date.fromisoformat(r["valid_from"]),
                                    Decimal(str(r["daily_percent"]))))
        except (KeyError, TypeError, ValueError, InvalidOperation):
            raise BillingError(f"interest_rates[{i}]: valid_from (date) and daily_percent"
                               " are required") from None
    check_rates(rates)
    fees = doc.get("reconnection_fees")
    if not isinstance(fees, Mapping) or set(fees) != {"meter", "pole"}:
        raise BillingError("reconnection_fees: 'meter' and 'pole' amounts are required")
    court = doc.get("court")
    if not isinstance(court, str) or not 1 <= len(court) <= 200:
        raise BillingError("court: 1–200 characters required")
    try:
        vat = Decimal(str(doc.get("fee_vat_percent")))
    except InvalidOperation:
        raise BillingError("fee_vat_percent: a number is required") from None
    if not vat.is_finite() or not 0 <= vat < 100:
        raise BillingError("fee_vat_percent: a number in [0, 100) is required")
    posting = doc.get("posting")
    if not isinstance(posting, Mapping) or any(not isinstance(posting.get(k), str)
                                               for k in _POSTING):
        raise BillingError(f"posting: accounts for {', '.join(_POSTING)} are required")
    accounts = tuple(Account(str(a.get("account")), str(a.get("name")), str(a.get("kind")))
                     for a in doc.get("accounts") or [] if isinstance(a, Mapping))
    return Ladder(tuple(steps), tuple(rates), _int(doc, "plan_grace_days", "ladder"), court,
                  {w: _amount(fees[w], f"reconnection_fees.{w}") for w in ("meter", "pole")},
                  vat, accounts, {k: str(posting[k]) for k in _POSTING})


@lru_cache(maxsize=8)
def load_ladder(path: Path | None = None) -> Ladder:
    source = path or DEFAULT_LADDER
    try:
        doc = json.loads(Path(source).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BillingError(f"collections ladder {Path(source).name}: {exc}") from exc
    return parse_ladder(doc)


def chart_with(chart: Chart, ladder: Ladder) -> Chart:
    """The chart plus the ladder's own accounts; every posting account must exist."""
    doc = {
        "accounts": [{"account": a.account, "name": a.name, "kind": a.kind}
                     for a in (*chart.accounts.values(), *(
                         a for a in ladder.accounts if a.account not in chart.accounts))],
        "posting": {**chart.roles, "revenue": dict(chart.revenue),
                    "payment_channels": dict(chart.payment_channels)},
    }
    merged = parse_chart(doc)
    for key, account in ladder.posting.items():
        if account not in merged.accounts:
            raise BillingError(f"posting.{key}: {account!r} is not an account of the chart")
    return merged


def next_action(facts: AccountFacts, today: date, ladder: Ladder) -> str | None:
    """What the daily run does with one account: 'cleared', the next step's name, or None."""
    if facts.overdue_fen <= 0:
        return CLEARED if facts.stage != "current" else None
    if facts.plan_active:
        return None
    i = STAGES.index(facts.stage)
    if i >= len(ladder.steps):
        return None
    step = ladder.steps[i]
    if facts.days_overdue < step.days_overdue or facts.overdue_fen < step.min_amount_fen:
        return None
    if facts.stage_on is not None and (today - facts.stage_on).days < step.wait_days:
        return None
    return step.step


def plan_status(
    instalments: Sequence[tuple[date, int]], paid: Sequence[tuple[date, int]], today: date,
    grace_days: int,
) -> str:
    """'completed' when the payments since the agreement cover all instalments, 'breached'
    when, ``grace_days`` after an instalment's date (already past today), the payments up to
    then do not cover the instalments due up to it; 'active' otherwise."""
    total = sum(a for _, a in instalments)
    if sum(a for d, a in paid if d <= today) >= total:
        return COMPLETED
    due_so_far = 0
    for due_on, amount in sorted(instalments):
        due_so_far += amount
        deadline = due_on + timedelta(days=grace_days)
        if deadline < today and sum(a for d, a in paid if d <= deadline) < due_so_far:
            return BREACHED
    return ACTIVE


def check_instalments(instalments: Sequence[tuple[date, int]], agreed_on: date) -> None:
    if not instalments:
        raise BillingError("instalments: at least one instalment is required")
    previous = agreed_on - timedelta(days=1)
    for i, (due_on, amount) in enumerate(instalments):
        if due_on <= previous:
            raise BillingError(f"instalments[{i}].due_on: must be after the agreement date"
                               " and the previous instalment")
        if amount <= 0:
            raise BillingError(f"instalments[{i}].amount: must be above zero")
        previous = due_on
