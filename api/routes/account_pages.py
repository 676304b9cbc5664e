"""Customer self-service pages and calls (issue #6).

GET  /api/v1/portal/export.csv   consumption by month + invoices (see ``api.portal_account``)
GET  /api/v1/portal/export.xml   Green Button (ESPI) daily consumption, 24 months (``api.espi``)
GET  /moji-podaci.xml            the same for the browser (to /prijava without a session)
GET/POST /lozinka, POST /api/v1/portal/password   change password
GET/POST /obavjestenja                             notification preferences
GET/POST /prijave                                  report a problem, see one's reports
POST /api/v1/ops/reports/{report_id}/status        operator moves a report on

A wrong current password counts as a failed login of the account (``api.throttle``,
scope ``portal``) and is refused while the account is locked. A changed password ends
every session of the customer; the browser that changed it gets a fresh one.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import psycopg
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from api import ApiError, BadRequest, NotFound, throttle
from api.deps import AppSettings, Conn, Customer, Now, Operator, Today
from api.espi import DailyRow, build_feed
from api.portal_account import (
    CATEGORIES,
    CHANNELS,
    EVENTS,
    add_report,
    customer_points,
    customer_reports,
    export_csv,
    move_report,
    new_password_problem,
    preferences,
    report_problem,
    save_preferences,
    set_password,
)
from api.routes.pages import Form, Session, redirect, render, same, session_csrf
from api.sessions import COOKIE, check_login, start_session
from app.settings import Settings
from rating.calendar import LOCAL_TZ

router = APIRouter(include_in_schema=False)
api_router = APIRouter(tags=["portal"])


def _set_session_cookie(response: Response, token: str, settings: Settings) -> None:
    response.set_cookie(COOKIE, token, max_age=settings.session_absolute_hours * 3600,
                        path="/", secure=settings.cookie_secure, httponly=True,
                        samesite="lax")


# ---- CSV export ----------------------------------------------------------------------


@api_router.get("/api/v1/portal/export.csv")
def export(customer: Customer, conn: Conn, today: Today) -> Response:
    return Response(
        export_csv(conn, customer, today).encode("utf-8"),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="potrosnja-{customer}.csv"'},
    )


# ---- Green Button (ESPI) export -------------------------------------------------------

ESPI_MONTHS = 24
_DAILY_SQL = """
SELECT d.metering_point_id, d.service, d.register, d.local_day, d.quantity_milli
FROM contracts c
JOIN daily_consumption d
  ON d.metering_point_id = c.metering_point_id AND d.service = c.service
WHERE c.customer_id = %(customer)s AND c.service IN ('electricity', 'water')
  AND d.local_day BETWEEN %(first)s AND %(today)s
  AND d.local_day >= c.valid_from AND (c.valid_to IS NULL OR d.local_day <= c.valid_to)
"""


def espi_first_day(today: date, months: int = ESPI_MONTHS) -> date:
    """The first day of the month ``months`` months before ``today``'s month."""
    index = today.year * 12 + today.month - 1 - months
    return date(index // 12, index % 12 + 1, 1)


def daily_rows(conn: psycopg.Connection, customer_id: str, today: date) -> list[DailyRow]:
    """The customer's metered days (only while each contract ran), the last 24 months."""
    rows = conn.execute(_DAILY_SQL, {"customer": customer_id, "today": today,
                                     "first": espi_first_day(today)}).fetchall()
    return [DailyRow(str(mp), str(svc), str(reg), day, int(q))
            for mp, svc, reg, day, q in rows]


def espi_response(conn: psycopg.Connection, customer_id: str, now: datetime) -> Response:
    today = now.astimezone(LOCAL_TZ).date()
    body = build_feed(customer_id, daily_rows(conn, customer_id, today), now=now)
    return Response(body, media_type="application/atom+xml; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="green-button-{customer_id}.xml"',
        "Cache-Control": "no-store"})


@api_router.get("/api/v1/portal/export.xml")
def export_espi(customer: Customer, conn: Conn, now: Now) -> Response:
    return espi_response(conn, customer, now)


@router.get("/moji-podaci.xml")
def my_data_xml(session: Session, conn: Conn, now: Now) -> Response:
    if session is None:
        return redirect("/prijava")
    return espi_response(conn, session[0], now)


# ---- password ------------------------------------------------------------------------


def change_password(request: Request, conn: psycopg.Connection, customer_id: str,
                    current: str, new: str, repeat: str, now: Any,
                    settings: Settings) -> tuple[str | None, str | None]:
    """(i18n key of the problem, None) or (None, the new session token)."""
    ip = throttle.client_ip(request)
    with conn.transaction():
        throttle.check(conn, "portal", customer_id, ip, now)  # Throttled while locked
        if check_login(conn, customer_id, current) is None:
            throttle.record_failure(conn, "portal", customer_id, ip, now,
                                    throttle.policy_of(request.app.state))
            return "pw_wrong_current", None
    problem = new_password_problem(new, repeat)
    if problem:
        return problem, None
    with conn.transaction():
        throttle.record_success(conn, "portal", customer_id)
        set_password(conn, customer_id, new)
        return None, start_session(conn, customer_id, now, settings)


def _password_page(request: Request, session: tuple[str, str], *, message: str | None = None,
                   done: bool = False, status: int = 200) -> Response:
    return render(request, "lozinka.html", {"message": message, "done": done,
                                            "active": "password"},
                  status=status, session=session)


@router.get("/lozinka")
def password_form(request: Request, session: Session) -> Response:
    if session is None:
        return redirect("/prijava")
    return _password_page(request, session, done=request.query_params.get("ok") == "1")


@router.post("/lozinka")
def password_submit(request: Request, form: Form, session: Session, conn: Conn, now: Now,
                    settings: AppSettings) -> Response:
    if session is None:
        return redirect("/prijava")
    if not same(form.get("csrf"), session_csrf(session[1])):
        return _password_page(request, session, message="form_expired", status=403)
    try:
        problem, token = change_password(
            request, conn, session[0], form.get("current", ""), form.get("new", ""),
            form.get("repeat", ""), now, settings)
    except throttle.Throttled as exc:
        response = _password_page(request, session, message="pw_throttled", status=429)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    if token is None:
        status = 403 if problem == "pw_wrong_current" else 400
        return _password_page(request, session, message=problem, status=status)
    response = redirect("/lozinka?ok=1")
    _set_session_cookie(response, token, settings)
    return response


class PasswordChange(BaseModel):
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=1, max_length=1024)
    new_password_repeat: str = Field(min_length=1, max_length=1024)


_API_MESSAGES = {
    "pw_wrong_current": (403, "current_password: wrong password"),
    "pw_too_short": (422, "new_password: at least 10 characters"),
    "pw_too_long": (422, "new_password: at most 1024 characters"),
    "pw_mismatch": (422, "new_password_repeat: does not match new_password"),
}


@api_router.post("/api/v1/portal/password")
def password_api(body: PasswordChange, request: Request, customer: Customer, conn: Conn,
                 now: Now, settings: AppSettings) -> Response:
    problem, token = change_password(request, conn, customer, body.current_password,
                                     body.new_password, body.new_password_repeat, now,
                                     settings)
    if token is None:
        status, detail = _API_MESSAGES[str(problem)]
        raise ApiError(detail, status_code=status)
    response = Response(status_code=204)
    _set_session_cookie(response, token, settings)
    return response


# ---- notification preferences -----------------------------------------------------------


def _prefs_page(request: Request, session: tuple[str, str], conn: psycopg.Connection, *,
                message: str | None = None, status: int = 200) -> Response:
    return render(request, "obavjestenja.html", {
        "prefs": preferences(conn, session[0]), "events": EVENTS, "channels": CHANNELS,
        "message": message, "active": "notifications",
    }, status=status, session=session)


@router.get("/obavjestenja")
def prefs_form(request: Request, session: Session, conn: Conn) -> Response:
    if session is None:
        return redirect("/prijava")
    saved = request.query_params.get("ok") == "1"
    return _prefs_page(request, session, conn, message="prefs_saved" if saved else None)


@router.post("/obavjestenja")
def prefs_submit(request: Request, form: Form, session: Session, conn: Conn,
                 now: Now) -> Response:
    if session is None:
        return redirect("/prijava")
    if not same(form.get("csrf"), session_csrf(session[1])):
        return _prefs_page(request, session, conn, message="form_expired", status=403)
    chosen = {(e, c) for e in EVENTS for c in CHANNELS if form.get(f"{e}:{c}") == "on"}
    with conn.transaction():
        save_preferences(conn, session[0], chosen, now)
    return redirect("/obavjestenja?ok=1")


# ---- problem reports -------------------------------------------------------------------


def _reports_page(request: Request, session: tuple[str, str], conn: psycopg.Connection, *,
                  typed: dict[str, str] | None = None, errors: dict[str, str] | None = None,
                  message: str | None = None, status: int = 200) -> Response:
    return render(request, "prijave.html", {
        "reports": customer_reports(conn, session[0]),
        "points": customer_points(conn, session[0]), "categories": CATEGORIES,
        "typed": typed or {}, "errors": errors or {}, "message": message,
        "active": "reports",
    }, status=status, session=session)


@router.get("/prijave")
def reports_page(request: Request, session: Session, conn: Conn) -> Response:
    if session is None:
        return redirect("/prijava")
    sent = request.query_params.get("ok") == "1"
    return _reports_page(request, session, conn, message="report_sent" if sent else None)


@router.post("/prijave")
def report_submit(request: Request, form: Form, session: Session, conn: Conn,
                  now: Now) -> Response:
    if session is None:
        return redirect("/prijava")
    if not same(form.get("csrf"), session_csrf(session[1])):
        return _reports_page(request, session, conn, message="form_expired", status=403)
    typed = {"category": form.get("category", ""), "body": form.get("body", ""),
             "metering_point_id": form.get("metering_point_id", "")}
    points = [p for p, _ in customer_points(conn, session[0])]
    errors = report_problem(typed["category"], typed["body"], typed["metering_point_id"],
                            points)
    if errors:
        typed["body"] = typed["body"][:4000]
        return _reports_page(request, session, conn, typed=typed, errors=errors, status=400)
    with conn.transaction():
        add_report(conn, session[0], typed["category"], typed["body"],
                   typed["metering_point_id"], now)
    return redirect("/prijave?ok=1")


class StatusChange(BaseModel):
    status: str = Field(min_length=1, max_length=32)


@api_router.post("/api/v1/ops/reports/{report_id}/status")
def report_status(report_id: int, body: StatusChange, who: Operator, conn: Conn,
                  now: Now) -> dict[str, Any]:
    try:
        with conn.transaction():
            old = move_report(conn, report_id, body.status, who.username, now)
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc
    if old is None:
        raise NotFound("no such report")
    return {"report_id": report_id, "previous": old, "status": body.status}


def install(app: Any) -> None:
    """Add the pages and the JSON calls of this module to the application."""
    app.include_router(router)
    app.include_router(api_router)
