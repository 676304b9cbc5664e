"""Request dependencies: settings, clock, a database connection and the three identities
(portal customer by session cookie, ingest gateway by bearer token, operator by session
bearer token, browser session cookie or the break-glass operator token, with role check,
CSRF check for the cookie and audit).

The clock lives on ``app.state``; a request reads it once (``get_now`` is cached per
request), so tests pin time by handing ``create_app`` their own clock.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import date, datetime
from typing import Annotated, Any
from urllib.parse import parse_qsl

import anyio
import anyio.to_thread
import psycopg
from fastapi import Depends, Request
from psycopg_pool import ConnectionPool
from pydantic import SecretStr

from api import ApiError, Forbidden, NotAuthenticated
from api.operators import (
    BREAK_GLASS,
    OPS_COOKIE,
    ROLES,
    OperatorIdentity,
    any_operator,
    ops_csrf,
    redact,
    required_roles,
    session_operator,
    write_audit,
)
from api.security import gateway_for_token, same_secret
from api.sessions import COOKIE, session_customer
from api.throttle import client_ip
from app.settings import Settings
from rating.calendar import LOCAL_TZ

BEARER = {"WWW-Authenticate": "Bearer"}
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
CSRF_HEADER = "X-CSRF-Token"
MAX_FORM_BYTES = 16384


# These three do no I/O: async, so FastAPI runs them on the event loop instead of spending
# a worker-thread hop on each.
async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def clock_now(request: Request) -> datetime:
    """The request's instant from the injected clock (aware, UTC)."""
    clock: Callable[[], datetime] = request.app.state.clock
    now = clock()
    if now.tzinfo is None:
        raise RuntimeError("the clock must return an aware datetime")
    return now


def local_day(now: datetime) -> date:
    """The utility's local calendar day (Europe/Sarajevo) at `now`."""
    return now.astimezone(LOCAL_TZ).date()


async def get_now(request: Request) -> datetime:
    return clock_now(request)


async def get_today(now: Annotated[datetime, Depends(get_now)]) -> date:
    return local_day(now)


def _waiting_room(request: Request) -> anyio.CapacityLimiter:
    """Threads that wait for a pooled connection, apart from the shared worker threads.

    Waiting for a connection on the shared threads can deadlock under a burst: when every
    worker thread waits for a connection, the requests holding the connections never get a
    thread for their next step (seen with 100 concurrent portal users: 0 answers until the
    pool's timeout). Here a waiter blocks only a thread of its own room.
    """
    room: anyio.CapacityLimiter | None = getattr(request.app.state, "conn_waiting_room", None)
    if room is None:
        room = request.app.state.conn_waiting_room = anyio.CapacityLimiter(256)
    return room


async def get_conn(request: Request) -> AsyncIterator[psycopg.Connection]:
    """A pooled connection in autocommit mode for the length of the request.

    Autocommit makes every ``with conn.transaction():`` in a route a real top-level
    transaction, committed before the response leaves (not after it was sent).
    """
    pool: ConnectionPool = request.app.state.pool
    room = _waiting_room(request)
    conn = await anyio.to_thread.run_sync(pool.getconn, limiter=room)
    was = conn.autocommit
    try:
        conn.autocommit = True
        yield conn
    finally:
        with contextlib.suppress(psycopg.Error):
            conn.autocommit = was
        await anyio.to_thread.run_sync(pool.putconn, conn, limiter=room)


Conn = Annotated[psycopg.Connection, Depends(get_conn)]
Now = Annotated[datetime, Depends(get_now)]
Today = Annotated[date, Depends(get_today)]
AppSettings = Annotated[Settings, Depends(get_settings)]


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def portal_customer(request: Request, conn: Conn, now: Now, settings: AppSettings) -> str:
    """The customer of the request's session; 401 without a live one."""
    token = request.cookies.get(COOKIE)
    customer_id = session_customer(conn, token, now, settings) if token else None
    if customer_id is None:
        raise NotAuthenticated("not logged in or the session has expired")
    return customer_id


def ingest_gateway(request: Request, conn: Conn) -> str:
    """The gateway whose bearer token the request carries; 401 otherwise."""
    token = bearer_token(request)
    gateway_id = gateway_for_token(conn, token) if token else None
    if gateway_id is None:
        raise NotAuthenticated("missing or invalid gateway token", headers=BEARER)
    return gateway_id


async def request_json(request: Request) -> Any:
    """The request's JSON body (Starlette caches the bytes), None when absent or not JSON."""
    if request.method in ("GET", "HEAD") or "json" not in request.headers.get(
        "content-type", ""
    ):
        return None  # a form or upload body was consumed as a stream: not read again
    try:
        raw = await request.body()
        return json.loads(raw) if raw else None
    except (ValueError, RuntimeError):
        return None


async def request_csrf(request: Request) -> str | None:
    """The CSRF token of a state-changing request made with an operator session cookie:
    the ``X-CSRF-Token`` header, else the ``csrf`` field of an urlencoded form (the body is
    read once here; Starlette keeps the bytes for the route). None otherwise."""
    if (request.method in SAFE_METHODS or bearer_token(request) is not None
            or OPS_COOKIE not in request.cookies):
        return None
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    length = request.headers.get("content-length", "")
    if ctype != "application/x-www-form-urlencoded" or (
            length.isdigit() and int(length) > MAX_FORM_BYTES):
        return None
    try:
        raw = await request.body()
        pairs = parse_qsl(raw[:MAX_FORM_BYTES].decode("utf-8"), max_num_fields=100)
    except (RuntimeError, UnicodeDecodeError, ValueError):
        return None
    return next((value for name, value in pairs if name == "csrf"), None)


class MissingRole(Forbidden):
    """403 of a known operator without a role the route needs (`needed`: one of them);
    the ``/ops`` pages answer it to a browser as a page (``api.routes.operator_pages``)."""

    def __init__(self, detail: str, needed: frozenset[str]) -> None:
        super().__init__(detail)
        self.needed = needed


def _check_role(request: Request, who: OperatorIdentity) -> None:
    route = request.scope.get("route")
    template = str(getattr(route, "path", request.url.path))
    needed = required_roles(request.method, template)
    if not who.may(needed):
        raise MissingRole(
            f"operator {who.username} lacks a role for {request.method} {template}:"
            f" needs one of {', '.join(sorted(needed))}", needed
        )


def operator(
    request: Request,
    conn: Conn,
    now: Now,
    settings: AppSettings,
    body: Annotated[Any, Depends(request_json)],
    csrf: Annotated[str | None, Depends(request_csrf)],
) -> Iterator[OperatorIdentity]:
    """The operator of the request: a live operator session (bearer token from
    ``POST /api/v1/operators/login``, or the ``ops_session`` cookie of ``/ops/prijava``)
    or the break-glass ``settings.operator_token`` (all roles). 401 without either, 403
    when the route needs a role the operator lacks (see ``api.operators.RULES``), 403
    when no operator access is configured at all, 403 when a state-changing request with
    the cookie lacks the session's CSRF token (header ``X-CSRF-Token`` or form field
    ``csrf``). A bearer token, when sent, is the only credential looked at.

    A state-changing call (any method but GET/HEAD) that gets through is written to
    ``operator_audit`` after the route: its outcome, path parameters, query and the
    JSON body with secrets masked.
    """
    route = request.scope.get("route")
    template = str(getattr(route, "path", request.url.path))
    who = _authenticate(request, conn, now, settings)
    _check_role(request, who)
    if request.method in SAFE_METHODS:
        yield who
        return
    if who.via == "cookie" and not (
        csrf and who.token and same_secret(csrf, ops_csrf(who.token))
    ):
        raise Forbidden(f"csrf: missing or wrong form token ({CSRF_HEADER} header or"
                        " csrf form field)")
    outcome: dict[str, Any] = {"status": "done"}
    try:
        yield who
    except ApiError as exc:
        outcome = {"status": "refused", "code": exc.status_code, "reason": exc.detail}
        raise
    except Exception:
        outcome = {"status": "error"}
        raise
    finally:
        params = {k: str(v) for k, v in request.path_params.items()}
        with contextlib.suppress(psycopg.Error):
            write_audit(
                conn, at=now, operator=who.username, action=f"{request.method} {template}",
                target=",".join(f"{k}={v}" for k, v in params.items()) or None,
                detail={**outcome, "query": dict(request.query_params), "body": redact(body)},
                ip=client_ip(request),
            )


def page_operator(
    request: Request, conn: Conn, now: Now, settings: AppSettings
) -> OperatorIdentity | None:
    """The operator of an ``/ops`` page (GET): as ``operator``, but None instead of 401
    when a browser (``Accept: text/html``) comes without a session, so that the page can
    send it to ``/ops/prijava``; other clients still get the 401."""
    try:
        who = _authenticate(request, conn, now, settings)
    except NotAuthenticated:
        if "text/html" in request.headers.get("accept", ""):
            return None
        raise
    _check_role(request, who)
    return who


def _authenticate(
    request: Request, conn: psycopg.Connection, now: datetime, settings: Settings
) -> OperatorIdentity:
    configured: Any = getattr(settings, "operator_token", None)
    expected = (
        configured.get_secret_value() if isinstance(configured, SecretStr) else configured
    )
    token = bearer_token(request)
    if token is not None and expected and same_secret(token, str(expected)):
        return OperatorIdentity(BREAK_GLASS, frozenset(ROLES))
    if token is not None:
        who = session_operator(conn, token, now, settings, "bearer")
    else:
        cookie = request.cookies.get(OPS_COOKIE)
        who = (session_operator(conn, cookie, now, settings, "cookie")
               if cookie and len(cookie) <= 128 else None)
    if who is not None:
        return who
    if not expected and not any_operator(conn):
        raise Forbidden("operator access not configured")
    raise NotAuthenticated("missing or invalid operator token", headers=BEARER)


Customer = Annotated[str, Depends(portal_customer)]
Gateway = Annotated[str, Depends(ingest_gateway)]
Operator = Annotated[OperatorIdentity, Depends(operator)]
OpsPage = Annotated[OperatorIdentity | None, Depends(page_operator)]
