"""The daily collections run and the operator's account calls (PostgreSQL).

`run_collections(conn, today)` first settles payment plans (completed or breached), then
moves each account at most one step (rules in `billing.collections`). Each step writes a
trace row (collection_steps) and charges the interest accrued so far and not yet charged
(debit receivables, credit interest revenue) on that step's demand. Letters are rendered on
demand from the trace row (`billing.letters`); the row's detail keeps what they say. The
disconnection step issues a work order per metered service of the customer (metering point
and installed meter); the legal step files a case (`billing.legal`). Runs are serialized by
an advisory lock, and a second run of the same day changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from billing import BillingError
from billing.aging import CustomerItems, load_items
from billing.collections import (
    CLEARED,
    AccountFacts,
    Ladder,
    check_instalments,
    next_action,
    plan_status,
)
from billing.interest import interest_by_invoice, overdue
from billing.ledger import Chart, LineDraft
from billing.ledger_posting import lock_counters
from billing.legal import charts_for, open_case, post_charge
from rating.money import format_km

PREFIX = {"reminder": "OPM", "warning": "OPI", "disconnection": "ISK", "legal": "TUZ"}


@dataclass
class RunReport:
    run_on: date
    accounts: int = 0  # accounts with invoices examined
    steps: dict[str, int] = field(default_factory=dict)  # step → accounts moved
    letters: list[str] = field(default_factory=list)
    interest_charged_fen: int = 0
    orders: int = 0
    cases_opened: int = 0
    plans: dict[str, int] = field(default_factory=dict)  # completed / breached → count


def run_collections(conn: psycopg.Connection, today: date, *, ladder: Ladder | None = None,
                    chart: Chart | None = None) -> RunReport:
    lad, full = charts_for(ladder, chart)
    report = RunReport(today)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('billing.collections_run'))")
        lock_counters(conn, [today.year])
        _settle_plans(conn, today, lad, report)
        stages = {r[0]: (r[1], r[2]) for r in conn.execute(
            "SELECT customer_id, stage, stage_on FROM collection_accounts")}
        planned = {r[0] for r in conn.execute(
            "SELECT customer_id FROM payment_plans WHERE status = 'active'")}
        items = load_items(conn, today)
        report.accounts = len(items)
        for cid, it in items.items():
            amount, days = overdue(it.invoices, it.credits, today)
            stage, stage_on = stages.get(cid, ("current", None))
            action = next_action(AccountFacts(stage, stage_on, amount, days, cid in planned),
                                 today, lad)
            if action is None:
                continue
            if action == CLEARED:
                _trace(conn, cid, CLEARED, today)
                _set_stage(conn, cid, "current", today)
            else:
                _step(conn, cid, action, today, it, amount, days, lad, full, report)
            report.steps[action] = report.steps.get(action, 0) + 1
    return report


def _step(conn: psycopg.Connection, cid: str, step: str, today: date, it: CustomerItems,
          amount: int, days: int, lad: Ladder, chart: Chart, report: RunReport) -> None:
    rows = interest_by_invoice(it.invoices, it.credits, today, lad.rates)
    accrued = sum(r.interest_fen for r in rows)
    new_interest = max(accrued - it.interest_charged_fen, 0)
    row = conn.execute("SELECT nextval(pg_get_serial_sequence('collection_steps', 'step_id'))"
                       ).fetchone()
    step_id = int(row[0]) if row else 0
    ref = f"{PREFIX[step]}-{today.year}-{step_id:06d}"
    points = _points(conn, cid, today) if step == "disconnection" else []
    detail = {
        "invoices": [{"number": r.number, "due_on": r.due_on.isoformat(),
                      "open": format_km(r.open_fen), "interest": format_km(r.interest_fen)}
                     for r in rows if r.open_fen > 0 and r.due_on < today],
        "interest_accrued": format_km(accrued),
        "pay_within_days": lad.step(step).pay_within_days,
        "points": points,
        "fees": {w: format_km(f) for w, f in lad.reconnection_fees_fen.items()},
    }
    if not _trace(conn, cid, step, today, amount, days, new_interest, ref, detail, step_id):
        return
    report.letters.append(ref)
    if new_interest > 0:
        post_charge(conn, charge_id=f"KAM-{ref}", customer_id=cid, kind="interest", on=today,
                    amount_fen=new_interest, chart=chart, description=f"Zatezna kamata, {ref}",
                    lines=(LineDraft(chart.roles["receivables"], new_interest, 0, cid),
                           LineDraft(chart.roles["interest_revenue"], 0, new_interest)))
        report.interest_charged_fen += new_interest
    for p in points:
        conn.execute(
            """INSERT INTO disconnection_orders (customer_id, step_id, metering_point_id,
               meter_id, service, issued_on) VALUES (%s, %s, %s, %s, %s, %s)""",
            (cid, step_id, p["metering_point_id"], p["meter_id"], p["service"], today))
        report.orders += 1
    if step == "legal":
        open_case(conn, cid, today, court=lad.court, principal_fen=amount, interest_fen=accrued)
        report.cases_opened += 1
    _set_stage(conn, cid, step, today)


def _points(conn: psycopg.Connection, cid: str, today: date) -> list[dict[str, Any]]:
    """The customer's metered services today, with the meter installed at each point."""
    rows = conn.execute(
        """SELECT DISTINCT c.metering_point_id, c.service, mp.address,
                  (SELECT i.meter_id FROM meter_installations i JOIN meters m USING (meter_id)
                   WHERE i.metering_point_id = c.metering_point_id AND m.service = c.service
                     AND i.installed_at::date <= %(d)s
                     AND (i.removed_at IS NULL OR i.removed_at::date > %(d)s)
                   ORDER BY i.installed_at DESC LIMIT 1)
           FROM contracts c JOIN metering_points mp USING (metering_point_id)
           WHERE c.customer_id = %(c)s AND c.service IN ('electricity', 'water')
             AND c.valid_from <= %(d)s AND (c.valid_to IS NULL OR c.valid_to >= %(d)s)
           ORDER BY 1, 2""", {"c": cid, "d": today}).fetchall()
    return [{"metering_point_id": mp, "service": s, "address": a, "meter_id": m}
            for mp, s, a, m in rows]


def _trace(conn: psycopg.Connection, cid: str, step: str, on: date, amount: int = 0,
           days: int = 0, interest: int = 0, ref: str | None = None,
           detail: dict[str, Any] | None = None, step_id: int | None = None) -> bool:
    """Write a trace row; False when the same step was already traced that day."""
    row = conn.execute(
        """INSERT INTO collection_steps (step_id, customer_id, step, step_on, overdue_fen,
           days_overdue, interest_fen, letter_ref, detail)
           VALUES (coalesce(%s, nextval(pg_get_serial_sequence('collection_steps', 'step_id'))),
                   %s, %s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT (customer_id, step, step_on) DO NOTHING RETURNING step_id""",
        (step_id, cid, step, on, amount, days, interest, ref, Jsonb(detail or {}))).fetchone()
    return row is not None


def _set_stage(conn: psycopg.Connection, cid: str, stage: str, on: date) -> None:
    conn.execute(
        """INSERT INTO collection_accounts (customer_id, stage, stage_on) VALUES (%s, %s, %s)
           ON CONFLICT (customer_id) DO UPDATE SET stage = excluded.stage,
           stage_on = excluded.stage_on""", (cid, stage, on))


def _settle_plans(conn: psycopg.Connection, today: date, lad: Ladder, report: RunReport
                  ) -> None:
    plans = conn.execute(
        "SELECT plan_id, customer_id, agreed_on FROM payment_plans WHERE status = 'active'"
    ).fetchall()
    for plan_id, cid, agreed_on in plans:
        instalments = [(d, int(a)) for d, a in conn.execute(
            "SELECT due_on, amount_fen FROM plan_instalments WHERE plan_id = %s ORDER BY no",
            (plan_id,))]
        paid = [(d, int(a)) for d, a in conn.execute(
            "SELECT paid_on, amount_fen FROM payments WHERE customer_id = %s AND paid_on >= %s",
            (cid, agreed_on))]
        status = plan_status(instalments, paid, today, lad.plan_grace_days)
        if status == "active":
            continue
        conn.execute("UPDATE payment_plans SET status = %s, status_on = %s WHERE plan_id = %s",
                     (status, today, plan_id))
        _trace(conn, cid, f"plan_{status}", today, detail={"plan_id": plan_id})
        report.plans[status] = report.plans.get(status, 0) + 1


def create_plan(conn: psycopg.Connection, customer_id: str, agreed_on: date,
                instalments: Sequence[tuple[date, int]]) -> int:
    """Agree a payment plan (reprogram); suspends the ladder while it is kept. Linked to
    the customer's open legal case, if any."""
    check_instalments(instalments, agreed_on)
    if conn.execute("SELECT 1 FROM customers WHERE customer_id = %s", (customer_id,)
                    ).fetchone() is None:
        raise BillingError(f"customer_id: unknown customer {customer_id!r}")
    with conn.transaction():
        if conn.execute("SELECT 1 FROM payment_plans WHERE customer_id = %s AND status ="
                        " 'active' FOR UPDATE", (customer_id,)).fetchone():
            raise BillingError(f"customer_id: {customer_id} already has an active plan")
        row = conn.execute(
            """INSERT INTO payment_plans (customer_id, agreed_on, status_on, total_fen, case_id)
               VALUES (%s, %s, %s, %s, (SELECT max(case_id) FROM legal_cases WHERE
               customer_id = %s AND state IN ('filed', 'judgment', 'enforcement')))
               RETURNING plan_id""",
            (customer_id, agreed_on, agreed_on, sum(a for _, a in instalments), customer_id)
        ).fetchone()
        plan_id = int(row[0]) if row else 0
        for no, (due_on, amount) in enumerate(instalments, start=1):
            conn.execute("INSERT INTO plan_instalments VALUES (%s, %s, %s, %s)",
                         (plan_id, no, due_on, amount))
        _trace(conn, customer_id, "plan_agreed", agreed_on, detail={"plan_id": plan_id})
    return plan_id


def mark_disconnected(conn: psycopg.Connection, customer_id: str, on: date) -> int:
    """Field staff executed the open disconnection orders; return how many."""
    with conn.transaction():
        done = conn.execute("UPDATE disconnection_orders SET status = 'done', done_on = %s"
                            " WHERE customer_id = %s AND status = 'open'", (on, customer_id))
        if not done.rowcount:
            raise BillingError(f"customer_id: {customer_id} has no open disconnection order")
        conn.execute("UPDATE collection_accounts SET disconnected = true WHERE customer_id = %s",
                     (customer_id,))
        _trace(conn, customer_id, "disconnected", on)
    return done.rowcount


def reconnect(conn: psycopg.Connection, customer_id: str, where: str, today: date, *,
              ladder: Ladder | None = None, chart: Chart | None = None) -> str:
    """Reconnect a disconnected account and book the fee (VAT included): debit receivables,
    credit reconnection revenue and VAT payable. Returns the entry number."""
    lad, full = charts_for(ladder, chart)
    if where not in lad.reconnection_fees_fen:
        raise BillingError("where: must be 'meter' or 'pole'")
    with conn.transaction():
        lock_counters(conn, [today.year])
        row = conn.execute("SELECT disconnected FROM collection_accounts WHERE customer_id = %s"
                           " FOR UPDATE", (customer_id,)).fetchone()
        if not row or not row[0]:
            raise BillingError(f"customer_id: {customer_id} is not disconnected")
        gross = lad.reconnection_fees_fen[where]
        rate = lad.fee_vat_percent
        net = int((Decimal(gross) * 100 / (100 + rate)).quantize(Decimal(1), ROUND_HALF_UP))
        lines = [LineDraft(full.roles["receivables"], gross, 0, customer_id),
                 LineDraft(lad.posting["reconnection_revenue"], 0, net)]
        if gross > net:
            lines.append(LineDraft(full.roles["vat_payable"], 0, gross - net))
        number = post_charge(
            conn, charge_id=f"PRK-{customer_id}-{today.isoformat()}", customer_id=customer_id,
            kind="reconnection_fee", on=today, amount_fen=gross, lines=lines, chart=full,
            description=f"Ponovno priključenje ({where})")
        conn.execute("UPDATE collection_accounts SET disconnected = false WHERE customer_id = %s",
                     (customer_id,))
        _trace(conn, customer_id, "reconnection", today, gross, detail={"where": where})
    return number
