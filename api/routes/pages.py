"""Customer portal as server-rendered HTML pages (Jinja2), Bosnian by default.

/prijava (login) · /pregled (overview) · /racuni (invoices) · /racuni/{number} · /odjava.
The pages use the same sessions as the JSON portal (``api.sessions``). Every form that
changes state carries a CSRF token in a hidden field, checked here: for the login form a
random token that must match the ``portal_csrf`` cookie (double submit), once logged in a
token derived from the session's secret (HMAC), which a foreign page cannot know.
No script and no inline style anywhere: the CSP is ``default-src 'self'``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from api import throttle
from api.charts import service_charts
from api.deps import AppSettings, Conn, Now, Today
from api.i18n import LANG_COOKIE, LANGS, Formats, pick_lang, translator
from api.sessions import COOKIE, check_login, end_session, session_customer, start_session
from app.settings import Settings
from billing.accounts import (
    account_summary,
    consumption_series,
    invoice_detail,
    invoice_states,
    service_key,
)

HERE = Path(__file__).resolve().parent.parent
TEMPLATES = Jinja2Templates(directory=HERE / "templates")
CSRF_COOKIE = "portal_csrf"
MAX_FORM_BYTES = 16384
MAX_FORM_FIELDS = 100
CHART_MONTHS = 24

router = APIRouter(include_in_schema=False)


def install(app: FastAPI) -> None:
    """Add the pages and their stylesheet (``/static``) to the application."""
    from api.routes import self_read

    app.include_router(router)
    app.include_router(self_read.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")


# ---- plumbing ---------------------------------------------------------------------------


async def form_fields(request: Request) -> dict[str, str]:
    """An urlencoded form body (first value per name); {} when it is not one or too large."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        return {}
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return {}
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True,
                          max_num_fields=MAX_FORM_FIELDS)
    except (UnicodeDecodeError, ValueError):
        return {}
    fields: dict[str, str] = {}
    for name, value in pairs:
        fields.setdefault(name, value)
    return fields


Form = Annotated[dict[str, str], Depends(form_fields)]


def session_csrf(session_token: str) -> str:
    """The form token of a session: HMAC-SHA256 of a fixed label keyed by its secret."""
    return hmac.new(session_token.encode(), b"portal-form", hashlib.sha256).hexdigest()


def same(given: str | None, expected: str | None) -> bool:
    return bool(given and expected) and hmac.compare_digest(
        str(given).encode(), str(expected).encode()
    )


def page_lang(request: Request) -> str:
    return pick_lang(request.query_params.get("lang"), request.cookies.get(LANG_COOKIE))


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def render(
    request: Request, name: str, context: dict[str, Any], *, status: int = 200,
    session: tuple[str, str] | None = None,
) -> Response:
    lang = page_lang(request)
    response = TEMPLATES.TemplateResponse(
        request,
        name,
        {
            "lang": lang,
            "other_lang_href": other_lang_href(request, lang),
            "t": translator(lang),
            "f": Formats(lang),
            "customer_id": session[0] if session else None,
            "csrf": session_csrf(session[1]) if session else None,
            **context,
        },
        status_code=status,
    )
    response.headers["Cache-Control"] = "no-store"
    wanted = request.query_params.get("lang")
    if wanted in LANGS:
        response.set_cookie(
            LANG_COOKIE, str(wanted), max_age=365 * 24 * 3600, path="/",
            secure=_settings(request).cookie_secure, httponly=True, samesite="lax",
        )
    return response


def other_lang_href(request: Request, lang: str) -> str:
    """The link to the page in the other language: the same query (a year filter, the
    login's ``next``) with only ``lang`` changed. A refused form (POST) has no address to
    show again, so its link carries the language alone."""
    other = "bs" if lang == "en" else "en"
    kept = [] if request.method != "GET" else [
        (k, v) for k, v in request.query_params.multi_items() if k != "lang"]
    return "?" + urlencode([*kept, ("lang", other)])


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def live_session(request: Request, conn: Conn, now: Now, settings: AppSettings
                 ) -> tuple[str, str] | None:
    """(customer_id, session token) of a live session, else None."""
    token = request.cookies.get(COOKIE)
    if not token or len(token) > 128:
        return None
    customer_id = session_customer(conn, token, now, settings)
    return None if customer_id is None else (customer_id, token)


Session = Annotated[tuple[str, str] | None, Depends(live_session)]


def _clear(response: Response, name: str, settings: Settings) -> None:
    response.delete_cookie(name, path="/", secure=settings.cookie_secure, httponly=True,
                           samesite="lax")


# ---- login and logout ------------------------------------------------------------------


@router.get("/")
def home(session: Session) -> RedirectResponse:
    return redirect("/pregled" if session else "/prijava")


def _login_page(request: Request, settings: Settings, *, status: int = 200,
                message: str | None = None, notice: str | None = None,
                customer_id: str = "", errors: dict[str, str] | None = None) -> Response:
    token = request.cookies.get(CSRF_COOKIE)
    fresh = not token or len(token) != 43
    if fresh:
        token = secrets.token_urlsafe(32)
    response = render(request, "login.html", {
        "form_csrf": token, "message": message, "notice": notice,
        "entered_id": customer_id, "errors": errors or {},
    }, status=status)
    if fresh:
        response.set_cookie(CSRF_COOKIE, str(token), path="/", secure=settings.cookie_secure,
                            httponly=True, samesite="strict")
    return response


@router.get("/prijava")
def login_form(request: Request, session: Session, settings: AppSettings) -> Response:
    if session:
        return redirect("/pregled")
    notice = "logged_out" if request.query_params.get("odjava") == "1" else None
    stale = COOKIE in request.cookies
    if stale:
        notice = "session_over"
    response = _login_page(request, settings, notice=notice)
    if stale:
        _clear(response, COOKIE, settings)
    return response


@router.post("/prijava")
def login(request: Request, form: Form, conn: Conn, now: Now, settings: AppSettings) -> Response:
    """Same message, status and cost for an unknown customer ID and a wrong password."""
    customer_id = form.get("customer_id", "").strip()[:64]
    password = form.get("password", "")
    if not same(form.get("csrf"), request.cookies.get(CSRF_COOKIE)):
        return _login_page(request, settings, status=403, message="form_expired",
                           customer_id=customer_id)
    errors = {name: "required" for name, value in
              (("customer_id", customer_id), ("password", password)) if not value}
    if errors:
        return _login_page(request, settings, status=400, customer_id=customer_id,
                           errors=errors)
    ip = throttle.client_ip(request)
    try:
        with conn.transaction():
            throttle.check(conn, "portal", customer_id, ip, now)
            name = check_login(conn, customer_id, password)
            if name is None:
                throttle.record_failure(conn, "portal", customer_id, ip, now,
                                        throttle.policy_of(request.app.state))
    except throttle.Throttled as exc:
        minutes = -(-exc.retry_after // 60)
        message = (f"Too many failed logins. Try again in {minutes} min."
                   if page_lang(request) == "en" else
                   f"Previše neuspjelih prijava. Pokušajte ponovo za {minutes} min.")
        response = _login_page(request, settings, status=429, message=message,
                               customer_id=customer_id)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    with conn.transaction():
        if name is not None:
            throttle.record_success(conn, "portal", customer_id)
            old = request.cookies.get(COOKIE)
            if old:
                end_session(conn, old)
            token = start_session(conn, customer_id, now, settings)
    if name is None:
        return _login_page(request, settings, status=401, message="login_failed",
                           customer_id=customer_id)
    response = redirect("/pregled")
    response.set_cookie(COOKIE, token, max_age=settings.session_absolute_hours * 3600,
                        path="/", secure=settings.cookie_secure, httponly=True, samesite="lax")
    _clear(response, CSRF_COOKIE, settings)
    return response


@router.post("/odjava")
def logout(request: Request, form: Form, session: Session, conn: Conn,
           settings: AppSettings) -> Response:
    if session is None:
        return redirect("/prijava")
    if not same(form.get("csrf"), session_csrf(session[1])):
        return render(request, "error.html", {"title": "form_expired", "message": None},
                      status=403, session=session)
    end_session(conn, session[1])
    response = redirect("/prijava?odjava=1")
    _clear(response, COOKIE, settings)
    return response


# ---- account pages -----------------------------------------------------------------------


@router.get("/pregled")
def overview(request: Request, session: Session, conn: Conn) -> Response:
    if session is None:
        return redirect("/prijava")
    summary = account_summary(conn, session[0])
    if summary is None:  # the session outlived the customer record
        return redirect("/prijava")
    lang = page_lang(request)
    charts = []
    if summary.last_period:
        series = consumption_series(conn, session[0], CHART_MONTHS)
        charts = service_charts(series, summary.last_period, CHART_MONTHS, lang)
    services = sorted(set(summary.last) | set(summary.previous), key=service_key)
    return render(request, "overview.html",
                  {"s": summary, "services": services, "charts": charts}, session=session)


@router.get("/racuni")
def invoices(request: Request, session: Session, conn: Conn, today: Today) -> Response:
    if session is None:
        return redirect("/prijava")
    states = invoice_states(conn, session[0], today)
    return render(request, "invoices.html", {"invoices": states}, session=session)


@router.get("/racuni/{number}")
def invoice(number: str, request: Request, session: Session, conn: Conn, today: Today,
            settings: AppSettings) -> Response:
    if session is None:
        return redirect("/prijava")
    found = invoice_detail(conn, session[0], number, today) if len(number) <= 64 else None
    if found is None:
        return render(request, "error.html",
                      {"title": "not_found", "message": "no_such_invoice"},
                      status=404, session=session)
    account = settings.recipient_account
    shown = f"{account[:3]} {account[3:6]} {account[6:14]} {account[14:]}"
    return render(request, "invoice.html", {"inv": found, "recipient_account": shown},
                  session=session)
