"""Request dependencies: settings, clock, a database connection and the three identities
(portal customer by session cookie, ingest gateway and operator by bearer token).

The clock lives on ``app.state``; a request reads it once (``get_now`` is cached per
request), so tests pin time by handing ``create_app`` their own clock.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import date, datetime
from typing import Annotated, Any

import psycopg
from fastapi import Depends, Request
from psycopg_pool import ConnectionPool
from pydantic import SecretStr

from api import Forbidden, NotAuthenticated
from api.security import gateway_for_token, same_secret
from api.sessions import COOKIE, session_customer
from app.settings import Settings
from rating.calendar import LOCAL_TZ

BEARER = {"WWW-Authenticate": "Bearer"}


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_now(request: Request) -> datetime:
    """The request's instant from the injected clock (aware, UTC)."""
    clock: Callable[[], datetime] = request.app.state.clock
    now = clock()
    if now.tzinfo is None:
        raise RuntimeError("the clock must return an aware datetime")
    return now


def get_today(now: Annotated[datetime, Depends(get_now)]) -> date:
    """The utility's local calendar day (Europe/Sarajevo) at the request's instant."""
    return now.astimezone(LOCAL_TZ).date()


def get_conn(request: Request) -> Iterator[psycopg.Connection]:
    """A pooled connection in autocommit mode for the length of the request.

    Autocommit makes every ``with conn.transaction():`` in a route a real top-level
    transaction, committed before the response leaves (not after it was sent).
    """
    pool: ConnectionPool = request.app.state.pool
    with pool.connection() as conn:
        was = conn.autocommit
        conn.autocommit = True
        try:
            yield conn
        finally:
            with contextlib.suppress(psycopg.Error):
                conn.autocommit = was


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


def operator(request: Request, settings: AppSettings) -> None:
    """Operator calls need ``settings.operator_token``; 403 when none is configured."""
    configured: Any = getattr(settings, "operator_token", None)
    expected = (
        configured.get_secret_value() if isinstance(configured, SecretStr) else configured
    )
    if not expected:
        raise Forbidden("operator access not configured")
    token = bearer_token(request)
    if token is None or not same_secret(token, str(expected)):
        raise NotAuthenticated("missing or invalid operator token", headers=BEARER)


Customer = Annotated[str, Depends(portal_customer)]
Gateway = Annotated[str, Depends(ingest_gateway)]
Operator = Annotated[None, Depends(operator)]
