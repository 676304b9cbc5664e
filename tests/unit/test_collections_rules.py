"""Ladder rules: one step per run when days, amount and waiting time hold; plans."""

from __future__ import annotations

import copy
import json
from datetime import date
from typing import Any

import pytest

from billing import BillingError
from billing.collections import (
    DEFAULT_LADDER,
    AccountFacts,
    chart_with,
    check_instalments,
    load_ladder,
    next_action,
    parse_ladder,
    plan_status,
)
from billing.ledger import load_chart

LADDER = load_ladder()
DOC: dict[str, Any] = json.loads(DEFAULT_LADDER.read_text(encoding="utf-8"))
TODAY = date(2026, 5, 20)


def facts(stage: str = "current", stage_on: date | None = None, overdue: int = 5000,
          days: int = 20, plan: bool = False) -> AccountFacts:
    return AccountFacts(stage, stage_on, overdue, days, plan)


def test_first_reminder_needs_days_and_amount() -> None:
    assert next_action(facts(days=15), TODAY, LADDER) == "reminder"
    assert next_action(facts(days=14), TODAY, LADDER) is None
    assert next_action(facts(overdue=999), TODAY, LADDER) is None  # below 10.00 KM
    assert next_action(facts(overdue=1000), TODAY, LADDER) == "reminder"


def test_one_step_per_run_and_waiting_time() -> None:
    # 60 days overdue would satisfy every step up to disconnection: only the next is taken
    assert next_action(facts(days=60), TODAY, LADDER) == "reminder"
    after = facts("reminder", date(2026, 5, 10), days=60)  # 10 days ago, warning waits 15
    assert next_action(after, TODAY, LADDER) is None
    assert next_action(facts("reminder", date(2026, 5, 5), days=60), TODAY, LADDER) == "warning"
    assert next_action(facts("warning", date(2026, 5, 10), days=60), TODAY,
                       LADDER) == "disconnection"
    assert next_action(facts("disconnection", date(2026, 1, 1), days=89), TODAY, LADDER) is None
    assert next_action(facts("disconnection", date(2026, 1, 1), days=90), TODAY,
                       LADDER) == "legal"
    assert next_action(facts("legal", date(2026, 1, 1), days=900), TODAY, LADDER) is None


def test_paid_in_full_clears_and_plan_suspends() -> None:
    assert next_action(facts("warning", TODAY, overdue=0), TODAY, LADDER) == "cleared"
    assert next_action(facts("current", overdue=0), TODAY, LADDER) is None
    assert next_action(facts("warning", date(2026, 1, 1), days=60, plan=True), TODAY,
                       LADDER) is None


def test_plan_status() -> None:
    plan = [(date(2026, 6, 1), 3000), (date(2026, 7, 1), 3000)]
    assert plan_status(plan, [], date(2026, 6, 6), 5) == "active"  # grace until 6 June
    assert plan_status(plan, [], date(2026, 6, 7), 5) == "breached"
    paid = [(date(2026, 6, 5), 3000)]
    assert plan_status(plan, paid, date(2026, 7, 6), 5) == "active"
    assert plan_status(plan, paid, date(2026, 7, 7), 5) == "breached"
    assert plan_status(plan, [*paid, (date(2026, 7, 2), 3000)], date(2026, 7, 2), 5
                       ) == "completed"
    with pytest.raises(BillingError, match=r"instalments\[1\].due_on"):
        check_instalments([(date(2026, 6, 1), 1), (date(2026, 6, 1), 1)], date(2026, 5, 1))
    with pytest.raises(BillingError, match=r"instalments\[0\].amount"):
        check_instalments([(date(2026, 6, 1), 0)], date(2026, 5, 1))


@pytest.mark.parametrize("path, value, message", [
    (("steps", 1, "step"), "legal", r"steps\[1\].step"),
    (("steps", 0, "min_amount"), "abc", r"steps\[0\].min_amount"),
    (("steps", 2, "wait_days"), 0, r"steps\[2\].wait_days"),
    (("reconnection_fees",), {"meter": "65.00"}, "reconnection_fees"),
    (("interest_rates", 0, "daily_percent"), "x", r"interest_rates\[0\]"),
    (("posting", "write_off_expense"), 5790, "posting"),
])
def test_bad_ladder_names_the_field(path: tuple[Any, ...], value: Any, message: str) -> None:
    doc = copy.deepcopy(DOC)
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(BillingError, match=message):
        parse_ladder(doc)


def test_chart_with_ladder_accounts() -> None:
    chart = chart_with(load_chart(), LADDER)
    assert chart.accounts["5790"].kind == "expense"
    assert chart.roles["receivables"] == "2110"
    doc = copy.deepcopy(DOC)
    doc["posting"]["legal_costs"] = "5999"
    with pytest.raises(BillingError, match="posting.legal_costs"):
        chart_with(load_chart(), parse_ladder(doc))
