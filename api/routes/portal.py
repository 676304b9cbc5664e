"""Customer portal: login/logout, account summary, consumption history, invoices.

Money leaves as decimal strings in KM ("123.45"), quantities with three decimals.
Every call except login needs a live session cookie (401 otherwise).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from api import NotAuthenticated, NotFound, throttle
from api.deps import AppSettings, Conn, Customer, Now, Today
from api.sessions import COOKIE, check_login, end_session, start_session
from billing.accounts import (
    AccountSummary,
    InvoiceState,
    ServiceMonth,
    account_summary,
    consumption_series,
    invoice_detail,
    invoice_states,
)
from rating.money import format_km, format_price, format_quantity

router = APIRouter(prefix="/api/v1/portal", tags=["portal"])
LOGIN_FAILED = "wrong customer ID or password"


class Login(BaseModel):
    customer_id: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


@router.post("/login")
def login(
    body: Login, request: Request, response: Response, conn: Conn, now: Now, settings: AppSettings
) -> dict[str, str]:
    """Check the password (same answer and cost for an unknown customer), open a session."""
    ip = throttle.client_ip(request)
    with conn.transaction():
        throttle.check(conn, "portal", body.customer_id, ip, now)  # 429 while locked
        name = check_login(conn, body.customer_id, body.password)
        if name is None:
            policy = throttle.policy_of(request.app.state)
            throttle.record_failure(conn, "portal", body.customer_id, ip, now, policy)
    if name is None:  # the failure is counted (committed) before the answer
        raise NotAuthenticated(LOGIN_FAILED)
    with conn.transaction():
        throttle.record_success(conn, "portal", body.customer_id)
        old = request.cookies.get(COOKIE)
        if old:
            end_session(conn, old)
        token = start_session(conn, body.customer_id, now, settings)
    response.set_cookie(
        COOKIE,
        token,
        max_age=settings.session_absolute_hours * 3600,
        path="/",
        secure=settings.cookie_secure,
        httponly=True,
        samesite="lax",
    )
    return {"customer_id": body.customer_id, "name": name}


@router.post("/logout", status_code=204)
def logout(request: Request, _customer: Customer, conn: Conn, settings: AppSettings) -> Response:
    token = request.cookies.get(COOKIE)
    if token:
        end_session(conn, token)
    response = Response(status_code=204)
    response.delete_cookie(
        COOKIE, path="/", secure=settings.cookie_secure, httponly=True, samesite="lax"
    )
    return response


@router.get("/summary")
def summary(customer: Customer, conn: Conn) -> dict[str, Any]:
    found = account_summary(conn, customer)
    if found is None:  # the session outlived the customer record
        raise NotAuthenticated("not logged in or the session has expired")
    return encode_summary(found)


@router.get("/consumption")
def consumption(
    customer: Customer, conn: Conn, months: Annotated[int, Query(ge=1, le=60)] = 24
) -> dict[str, Any]:
    series = consumption_series(conn, customer, months)
    return {"series": [{"period": p, "service": s, **encode_month(m)} for p, s, m in series]}


@router.get("/invoices")
def invoices(customer: Customer, conn: Conn, today: Today) -> list[dict[str, Any]]:
    return [encode_state(s) for s in invoice_states(conn, customer, today)]


@router.get("/invoices/{number}")
def invoice(number: str, customer: Customer, conn: Conn, today: Today) -> dict[str, Any]:
    found = invoice_detail(conn, customer, number, today) if len(number) <= 64 else None
    if found is None:
        raise NotFound("no such invoice")
    return {
        **encode_state(found.state),
        "net": format_km(found.net_fen),
        "vat": format_km(found.vat_fen),
        "payment_reference": found.payment_reference,
        "lines": [
            {
                "service": ln.service,
                "metering_point_id": ln.metering_point_id,
                "description": ln.description,
                "register": ln.register,
                "quantity": format_quantity(ln.quantity_milli),
                "unit": ln.unit,
                "unit_price": format_price(ln.unit_price_micro),
                "amount": format_km(ln.amount_fen),
                "vat_rate": format_rate(ln.vat_rate),
            }
            for ln in found.lines
        ],
        "vat_rows": [
            {"vat_rate": format_rate(v.vat_rate), "base": format_km(v.base_fen),
             "vat": format_km(v.vat_fen)}
            for v in found.vat_rows
        ],
    }


# ---- encoding -----------------------------------------------------------------------


def format_rate(rate: Decimal) -> str:
    """Decimal('17.00') → '17'; Decimal('8.50') → '8.5'."""
    return f"{rate.normalize():f}"


def encode_month(month: ServiceMonth) -> dict[str, str]:
    return {
        "quantity": format_quantity(month.quantity_milli),
        "unit": month.unit,
        "amount": format_km(month.amount_fen),
    }


def encode_state(state: InvoiceState) -> dict[str, Any]:
    return {
        "number": state.number,
        "period": state.period,
        "issued_on": state.issued_on.isoformat(),
        "due_on": state.due_on.isoformat(),
        "total": format_km(state.total_fen),
        "status": state.status,
    }


def encode_summary(s: AccountSummary) -> dict[str, Any]:
    def month(period: str | None, services: dict[str, ServiceMonth]) -> dict[str, Any] | None:
        if period is None:
            return None
        return {"period": period, "services": {k: encode_month(v) for k, v in services.items()}}

    return {
        "customer_id": s.customer_id,
        "name": s.name,
        "currency": "BAM",
        "balance": format_km(s.balance_fen),
        "last_payment": (
            None if s.last_payment is None
            else {"date": s.last_payment[0].isoformat(), "amount": format_km(s.last_payment[1])}
        ),
        "last_month": month(s.last_period, s.last),
        "previous_month": month(s.previous_period, s.previous),
        "change_percent": s.change_percent,
    }
