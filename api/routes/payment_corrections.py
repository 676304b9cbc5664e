"""Operator calls (role billing): reverse a wrongly matched payment, refund customer credit,
and see a customer's credit and corrections.

* ``POST /api/v1/billing/payment-reversals`` — ``{payment_id, reason, on?, rematch_to?}``;
* ``POST /api/v1/billing/refunds`` — ``{customer_id, amount: "12.50", reason, on?, channel?}``;
* ``GET /api/v1/billing/customers/{customer_id}/credit``.

Money leaves and arrives as KM strings; a wrong input is a 422 naming the field.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api import NotFound, Unprocessable
from api.deps import Conn, Operator, Today
from billing import BillingError
from billing.customer_credit import balances
from billing.payment_corrections import corrections, refund_credit, reverse_payment
from rating.money import format_km, parse_amount_fen

router = APIRouter(prefix="/api/v1/billing", tags=["payment corrections"])
CustomerId = Annotated[str, Field(pattern=r"^[0-9]{6,10}$")]


class ReversalRequest(BaseModel):
    payment_id: str = Field(min_length=1, max_length=200)
    reason: str = Field(min_length=1, max_length=500)
    on: date | None = Field(default=None, description="default: today (local)")
    rematch_to: CustomerId | None = Field(
        default=None, description="the right customer; none: back to the unmatched queue")


class RefundRequest(BaseModel):
    customer_id: CustomerId
    amount: str = Field(pattern=r"^[0-9]{1,9}\.[0-9]{2}$", description="KM, e.g. 45.20")
    reason: str = Field(min_length=1, max_length=500)
    on: date | None = None
    channel: str = Field(default="bank", min_length=1, max_length=50)


@router.post("/payment-reversals")
def reverse(body: ReversalRequest, op: Operator, conn: Conn, today: Today) -> dict[str, Any]:
    try:
        with conn.transaction():
            r = reverse_payment(conn, body.payment_id, reason=body.reason, on=body.on or today,
                                operator=op.username, rematch_to=body.rematch_to)
    except BillingError as exc:
        if "unknown payment" in str(exc):
            raise NotFound(str(exc)) from exc
        raise Unprocessable(str(exc)) from exc
    return {"payment_id": r.payment_id, "reversal_id": r.reversal_id,
            "customer_id": r.customer_id, "amount": format_km(r.amount_fen),
            "rematched_id": r.rematched_id, "rematched_to": r.rematched_to,
            "queued_id": r.queued_id}


@router.post("/refunds")
def refund(body: RefundRequest, op: Operator, conn: Conn, today: Today) -> dict[str, Any]:
    try:
        amount = parse_amount_fen(body.amount)
        with conn.transaction():
            refund_id = refund_credit(conn, body.customer_id, amount, reason=body.reason,
                                      on=body.on or today, operator=op.username,
                                      channel=body.channel)
    except BillingError as exc:
        raise Unprocessable(str(exc)) from exc
    except ValueError as exc:
        raise Unprocessable(f"amount: {exc}") from exc
    return {"refund_id": refund_id, "customer_id": body.customer_id,
            "amount": format_km(amount)}


@router.get("/customers/{customer_id}/credit")
def credit(customer_id: str, _op: Operator, conn: Conn) -> dict[str, Any]:
    found = balances(conn, [customer_id])
    if customer_id not in found:
        raise NotFound("no such customer")
    balance, held = found[customer_id]
    return {"customer_id": customer_id, "balance": format_km(balance),
            "credit": format_km(held),
            "corrections": [{k: format_km(v) if k == "amount_fen" else v for k, v in c.items()}
                            for c in corrections(conn, customer_id)]}
