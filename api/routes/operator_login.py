"""Operator login for the browser: ``GET/POST /ops/prijava``, ``POST /ops/odjava``.

The login form is protected by a double-submit CSRF token (random value in the form and
in the ``ops_login_csrf`` cookie); once logged in the browser holds ``ops_session``, an
HttpOnly ``SameSite=Strict`` cookie (``Secure`` unless ``settings.cookie_secure`` is off
for local HTTP) whose session row is kind ``cookie`` (``api.operators``). Every
state-changing request with it needs ``ops_csrf(session)`` (``api.deps.operator``).
Failed logins are throttled per username and per IP with the same counters as the API
login (scope ``operator``); an unknown username and a wrong password get the same answer
at the same cost. Logins, failed logins and logouts are written to ``operator_audit``.
"""

from __future__ import annotations

import re
import secrets
from functools import partial

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api import throttle
from api.deps import AppSettings, Conn, Now
from api.i18n import text
from api.operators import (
    OPS_COOKIE,
    OperatorIdentity,
    check_operator_login,
    end_operator_session,
    ops_csrf,
    session_operator,
    start_operator_session,
    write_audit,
)
from api.routes.operator_pages import ops_render
from api.routes.pages import Form, page_lang, redirect, render, same
from app.settings import Settings

router = APIRouter(include_in_schema=False)
LOGIN_CSRF_COOKIE = "ops_login_csrf"
LOGIN_PATH = "/ops/prijava"
_NEXT = re.compile(r"^/ops(/[A-Za-z0-9._~/-]*)?(\?[A-Za-z0-9._~=&%+-]*)?$")


def safe_next(value: str | None) -> str:
    """Where to go after the login: a local ``/ops`` path, else ``/ops``."""
    ok = value and len(value) <= 200 and ".." not in value and _NEXT.match(value)
    return value if ok and value else "/ops"


def _cookie(response: Response, name: str, value: str, settings: Settings,
            max_age: int | None = None) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", secure=settings.cookie_secure,
                        httponly=True, samesite="strict")


def _clear(response: Response, name: str, settings: Settings) -> None:
    response.delete_cookie(name, path="/", secure=settings.cookie_secure, httponly=True,
                           samesite="strict")


def _login_page(request: Request, settings: Settings, *, status: int = 200,
                message: str | None = None, notice: str | None = None, username: str = "",
                next_url: str = "/ops", errors: dict[str, str] | None = None) -> Response:
    token = request.cookies.get(LOGIN_CSRF_COOKIE)
    fresh = not token or len(token) != 43
    if fresh:
        token = secrets.token_urlsafe(32)
    # the language switch keeps where to go after the login (`next_url` is already safe)
    response = ops_render(request, "ops_login.html", {
        "form_csrf": token, "message": message, "notice": notice, "entered": username,
        "next_url": next_url, "errors": errors or {}}, status=status,
        keep={"next": next_url} if next_url != "/ops" else {})
    if fresh:
        _cookie(response, LOGIN_CSRF_COOKIE, str(token), settings)
    return response


def _live(request: Request, conn: Conn, now: Now, settings: Settings
          ) -> OperatorIdentity | None:
    """The operator of the browser's live session cookie, else None."""
    token = request.cookies.get(OPS_COOKIE)
    if not token or len(token) > 128:
        return None
    return session_operator(conn, token, now, settings, "cookie")


@router.get(LOGIN_PATH)
def login_form(request: Request, conn: Conn, now: Now, settings: AppSettings) -> Response:
    next_url = safe_next(request.query_params.get("next"))
    if _live(request, conn, now, settings):
        return redirect(next_url)
    notice = "logged_out" if request.query_params.get("odjava") == "1" else None
    stale = OPS_COOKIE in request.cookies
    response = _login_page(request, settings, notice="session_over" if stale else notice,
                           next_url=next_url)
    if stale:
        _clear(response, OPS_COOKIE, settings)
    return response


@router.post(LOGIN_PATH)
def login(request: Request, form: Form, conn: Conn, now: Now,
          settings: AppSettings) -> Response:
    """Same message, status and cost for an unknown operator and a wrong password."""
    username = form.get("username", "").strip().lower()[:64]
    password = form.get("password", "")[:1024]
    next_url = safe_next(form.get("next"))
    page = partial(_login_page, request, settings, username=username, next_url=next_url)
    if not same(form.get("csrf"), request.cookies.get(LOGIN_CSRF_COOKIE)):
        return page(status=403, message="form_expired")
    errors = {name: "required" for name, value in
              (("username", username), ("password", password)) if not value}
    if errors:
        return page(status=400, errors=errors)
    ip = throttle.client_ip(request)
    try:
        with conn.transaction():
            throttle.check(conn, "operator", username, ip, now)
            roles = check_operator_login(conn, username, password)
            if roles is None:
                throttle.record_failure(conn, "operator", username, ip, now,
                                        throttle.policy_of(request.app.state))
                write_audit(conn, at=now, operator=username, action="login_failed",
                            target=None, detail={"via": "cookie"}, ip=ip)
    except throttle.Throttled as exc:
        minutes = -(-exc.retry_after // 60)
        message = text(page_lang(request), "ops_throttled", minutes=minutes)
        response = page(status=429, message=message)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    if roles is None:
        return page(status=401, message="ops_login_failed")
    with conn.transaction():
        throttle.record_success(conn, "operator", username)
        old = request.cookies.get(OPS_COOKIE)
        if old and len(old) <= 128:
            end_operator_session(conn, old)
        token = start_operator_session(conn, username, now, settings, "cookie")
        write_audit(conn, at=now, operator=username, action="login", target=None,
                    detail={"via": "cookie"}, ip=ip)
    response = redirect(next_url)
    _cookie(response, OPS_COOKIE, token, settings, settings.session_absolute_hours * 3600)
    _clear(response, LOGIN_CSRF_COOKIE, settings)
    return response


@router.post("/ops/odjava")
def logout(request: Request, form: Form, conn: Conn, now: Now,
           settings: AppSettings) -> Response:
    who = _live(request, conn, now, settings)
    if who is None or who.token is None:
        response = redirect(LOGIN_PATH)
        _clear(response, OPS_COOKIE, settings)
        return response
    if not same(form.get("csrf"), ops_csrf(who.token)):
        return render(request, "error.html", {"title": "form_expired", "message": None},
                      status=403)
    with conn.transaction():
        end_operator_session(conn, who.token)
        write_audit(conn, at=now, operator=who.username, action="logout", target=None,
                    detail={"via": "cookie"}, ip=throttle.client_ip(request))
    response = redirect(f"{LOGIN_PATH}?odjava=1")
    _clear(response, OPS_COOKIE, settings)
    return response
