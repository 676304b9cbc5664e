"""Collections: operator calls (run, steps, letters, payment plans, legal cases,
disconnection, reconnection, aging) and the customer's late-payment interest on the portal.

Operator calls need the operator bearer token. Money leaves as KM strings ("81.49") and
arrives the same way; a wrong input is a 422 naming the field.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from api import NotFound, Unprocessable
from api.deps import Conn, Customer, Operator, Today
from billing import BillingError
from billing.aging import aging_report, load_items
from billing.collections import load_ladder
from billing.collections_run import create_plan, mark_disconnected, reconnect, run_collections
from billing.interest import interest_by_invoice
from billing.legal import Case, add_cost, change_state, list_cases
from billing.letters import letter_pdf
from rating.money import format_km, parse_amount_fen

operator_router = APIRouter(prefix="/api/v1/collections", tags=["collections"])
portal_router = APIRouter(prefix="/api/v1/portal", tags=["portal"])
Amount = Annotated[str, Field(pattern=r"^[0-9]{1,9}\.[0-9]{2}$", description="KM, e.g. 45.20")]


def _fen(value: str, field: str) -> int:
    try:
        return parse_amount_fen(value)
    except ValueError as exc:
        raise Unprocessable(f"{field}: {exc}") from exc


class RunRequest(BaseModel):
    run_on: date | None = Field(default=None, description="default: today (local)")


class Instalment(BaseModel):
    due_on: date
    amount: Amount


class PlanRequest(BaseModel):
    customer_id: str = Field(pattern=r"^[0-9]{6,10}$")
    agreed_on: date | None = None
    instalments: list[Instalment] = Field(min_length=1, max_length=120)


class CaseChange(BaseModel):
    state: Literal["judgment", "enforcement", "collected", "settled", "written_off"]
    on: date | None = None
    case_number: str | None = Field(default=None, min_length=1, max_length=100)
    note: str = Field(default="", max_length=500)


class CostRequest(BaseModel):
    kind: Literal["court_fee", "lawyer_fee"]
    amount: Amount
    on: date | None = None


class CustomerDay(BaseModel):
    customer_id: str = Field(pattern=r"^[0-9]{6,10}$")
    on: date | None = None


class Reconnection(CustomerDay):
    where: Literal["meter", "pole"]


def _case(c: Case) -> dict[str, Any]:
    return {"case_id": c.case_id, "customer_id": c.customer_id, "court": c.court,
            "case_number": c.case_number, "filed_on": c.filed_on, "state": c.state,
            "state_on": c.state_on, "principal": format_km(c.principal_fen),
            "interest": format_km(c.interest_fen), "costs": format_km(c.costs_fen)}


@operator_router.post("/run")
def run(body: RunRequest, _op: Operator, conn: Conn, today: Today) -> dict[str, Any]:
    report = run_collections(conn, body.run_on or today)
    return {"run_on": report.run_on, "accounts": report.accounts, "steps": report.steps,
            "letters": report.letters, "interest_charged": format_km(report.interest_charged_fen),
            "orders": report.orders, "cases_opened": report.cases_opened, "plans": report.plans}


@operator_router.get("/steps")
def steps(_op: Operator, conn: Conn, customer_id: str | None = None,
          since: date | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 200
          ) -> list[dict[str, Any]]:
    rows = conn.execute(
        """SELECT step_id, customer_id, step, step_on, overdue_fen, days_overdue, interest_fen,
                  letter_ref FROM collection_steps
           WHERE (%(c)s::text IS NULL OR customer_id = %(c)s)
             AND (%(s)s::date IS NULL OR step_on >= %(s)s)
           ORDER BY step_on DESC, step_id DESC LIMIT %(n)s""",
        {"c": customer_id, "s": since, "n": limit}).fetchall()
    return [{"step_id": r[0], "customer_id": r[1], "step": r[2], "step_on": r[3],
             "overdue": format_km(r[4]), "days_overdue": r[5], "interest": format_km(r[6]),
             "letter_ref": r[7]} for r in rows]


@operator_router.get("/letters/{letter_ref}.pdf")
def letter(letter_ref: str, _op: Operator, conn: Conn) -> Response:
    try:
        pdf = letter_pdf(conn, letter_ref)
    except BillingError as exc:
        raise NotFound(str(exc)) from exc
    return Response(pdf, media_type="application/pdf",
                    headers={"Content-Disposition": f'inline; filename="{letter_ref}.pdf"'})


@operator_router.post("/plans")
def plan(body: PlanRequest, _op: Operator, conn: Conn, today: Today) -> dict[str, Any]:
    instalments = [(i.due_on, _fen(i.amount, f"instalments[{n}].amount"))
                   for n, i in enumerate(body.instalments)]
    try:
        plan_id = create_plan(conn, body.customer_id, body.agreed_on or today, instalments)
    except BillingError as exc:
        raise Unprocessable(str(exc)) from exc
    return {"plan_id": plan_id, "total": format_km(sum(a for _, a in instalments))}


@operator_router.get("/cases")
def cases(_op: Operator, conn: Conn, state: str | None = None, customer_id: str | None = None,
          court: str | None = None) -> list[dict[str, Any]]:
    try:
        return [_case(c) for c in list_cases(conn, state=state, customer_id=customer_id,
                                             court=court)]
    except BillingError as exc:
        raise Unprocessable(str(exc)) from exc


@operator_router.post("/cases/{case_id}/state")
def case_state(case_id: int, body: CaseChange, _op: Operator, conn: Conn, today: Today
               ) -> dict[str, Any]:
    try:
        with conn.transaction():
            case = change_state(conn, case_id, body.state, body.on or today, note=body.note,
                                case_number=body.case_number)
    except BillingError as exc:
        raise Unprocessable(str(exc)) from exc
    return _case(case)


@operator_router.post("/cases/{case_id}/costs")
def case_cost(case_id: int, body: CostRequest, _op: Operator, conn: Conn, today: Today
              ) -> dict[str, str]:
    try:
        with conn.transaction():
            number = add_cost(conn, case_id, body.kind, _fen(body.amount, "amount"),
                              body.on or today)
    except BillingError as exc:
        raise Unprocessable(str(exc)) from exc
    return {"entry_number": number}


@operator_router.post("/disconnected")
def disconnected(body: CustomerDay, _op: Operator, conn: Conn, today: Today) -> dict[str, int]:
    try:
        return {"orders_done": mark_disconnected(conn, body.customer_id, body.on or today)}
    except BillingError as exc:
        raise Unprocessable(str(exc)) from exc


@operator_router.post("/reconnect")
def reconnection(body: Reconnection, _op: Operator, conn: Conn, today: Today) -> dict[str, str]:
    try:
        number = reconnect(conn, body.customer_id, body.where, body.on or today)
    except BillingError as exc:
        raise Unprocessable(str(exc)) from exc
    return {"entry_number": number,
            "fee": format_km(load_ladder().reconnection_fees_fen[body.where])}


@operator_router.get("/aging")
def aging(_op: Operator, conn: Conn, today: Today, as_of: date | None = None,
          customer_id: str | None = None) -> dict[str, Any]:
    report = aging_report(conn, as_of or today, customer_id)

    def km(buckets: dict[str, int]) -> dict[str, str]:
        return {k: format_km(v) for k, v in buckets.items()}

    return {"as_of": report.as_of, "totals": km(report.totals),
            "total": format_km(report.total_fen), "credit": format_km(report.credit_fen),
            "customers": [{"customer_id": r.customer_id, "name": r.name,
                           "buckets": km(r.buckets), "total": format_km(r.total_fen),
                           "credit": format_km(r.credit_fen)} for r in report.rows]}


def interest_statement(conn: Any, customer_id: str, as_of: date) -> dict[str, Any]:
    """Interest accrued per invoice to `as_of`, what demands already charged, the rest."""
    items = load_items(conn, as_of, customer_id).get(customer_id)
    if items is None:
        return {"as_of": as_of, "invoices": [], "accrued": "0.00", "charged": "0.00",
                "not_charged": "0.00"}
    rows = interest_by_invoice(items.invoices, items.credits, as_of, load_ladder().rates)
    accrued = sum(r.interest_fen for r in rows)
    return {"as_of": as_of,
            "invoices": [{"number": r.number, "due_on": r.due_on, "open": format_km(r.open_fen),
                          "days": r.days, "interest": format_km(r.interest_fen)}
                         for r in rows if r.interest_fen],
            "accrued": format_km(accrued), "charged": format_km(items.interest_charged_fen),
            "not_charged": format_km(max(accrued - items.interest_charged_fen, 0))}


@operator_router.get("/interest/{customer_id}")
def operator_interest(customer_id: str, _op: Operator, conn: Conn, today: Today,
                      as_of: date | None = None) -> dict[str, Any]:
    return interest_statement(conn, customer_id, as_of or today)


@portal_router.get("/interest")
def portal_interest(customer: Customer, conn: Conn, today: Today) -> dict[str, Any]:
    """The logged-in customer's late-payment interest as of today."""
    return interest_statement(conn, customer, today)


router = APIRouter()  # what the application includes: both of the above
router.include_router(operator_router)
router.include_router(portal_router)
