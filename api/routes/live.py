"""The customer's live view: ``/uzivo`` (page), ``GET /api/v1/portal/live/snapshot`` (JSON)
and ``GET /api/v1/portal/live`` (server-sent events).

The event stream polls a cheap per-customer fingerprint of ``daily_consumption`` every
``LIVE_POLL_SECONDS`` and sends a ``totals`` event (the snapshot JSON) when it changed;
the first event goes out at once. A pooled connection is borrowed only for each poll,
never held by an open stream. The stream ends when the client disconnects, when the
session ends or idles out (checked every ``SESSION_CHECK_SECONDS`` without marking it
seen) or after ``LIVE_MAX_SECONDS`` (the browser's EventSource reconnects by itself).
``app.state.live_poll_seconds`` / ``live_max_seconds`` / ``live_session_check_seconds``
override the defaults (tests).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import date, timedelta
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from psycopg_pool import ConnectionPool

from api import NotAuthenticated
from api.deps import Conn, Customer, Today, clock_now, local_day
from api.live_queries import consumption_fingerprint, encode_month, month_so_far
from api.routes import operator_pages
from api.routes.pages import Session, redirect, render
from api.security import token_sha256
from api.sessions import COOKIE
from stream.pipeline import load_catalog

LIVE_POLL_SECONDS = 2.0
LIVE_MAX_SECONDS = 600.0
SESSION_CHECK_SECONDS = 30.0
RETRY_MS = 3000

router = APIRouter()
router.include_router(operator_pages.router)


def snapshot(conn: Any, customer_id: str, today: date) -> dict[str, Any]:
    return encode_month(month_so_far(conn, customer_id, today, load_catalog(conn)))


@router.get("/api/v1/portal/live/snapshot", tags=["portal"])
def live_snapshot(customer: Customer, conn: Conn, today: Today) -> dict[str, Any]:
    """Consumption and the estimated bill of the current month so far."""
    return snapshot(conn, customer, today)


@router.get("/uzivo", include_in_schema=False)
def live_page(request: Request, session: Session, conn: Conn, today: Today) -> Response:
    if session is None:
        return redirect("/prijava")
    month = month_so_far(conn, session[0], today, load_catalog(conn))
    return render(request, "uzivo.html", {"mo": month, "active": "live"}, session=session)


def _today(request: Request) -> date:
    return local_day(clock_now(request))


def _customer_of(request: Request, token: str) -> str | None:
    """The customer of a live session, without marking it seen: an open stream (or its
    reconnections) must not keep an idle session alive; only requests of pages do."""
    pool: ConnectionPool = request.app.state.pool
    now = clock_now(request)
    idle = timedelta(minutes=request.app.state.settings.session_idle_minutes)
    with pool.connection() as conn:
        conn.autocommit = True
        row = conn.execute(
            "SELECT customer_id FROM portal_sessions WHERE session_sha256 = %s"
            " AND expires_at > %s AND last_seen_at + %s > %s",
            (token_sha256(token), now, idle, now)).fetchone()
    return None if row is None else str(row[0])


def _poll(request: Request, customer_id: str, last: tuple[Any, ...] | None
          ) -> tuple[tuple[Any, ...], dict[str, Any] | None]:
    """(fingerprint, snapshot or None when nothing changed since ``last``)."""
    pool: ConnectionPool = request.app.state.pool
    today = _today(request)
    with pool.connection() as conn:
        conn.autocommit = True
        mark = consumption_fingerprint(conn, customer_id, today)
        if mark == last:
            return mark, None
        return mark, snapshot(conn, customer_id, today)


def sse(event: str, data: dict[str, Any], event_id: int) -> bytes:
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return f"id: {event_id}\nevent: {event}\ndata: {body}\n\n".encode()


@router.get("/api/v1/portal/live", tags=["portal"])
async def live_stream(request: Request) -> StreamingResponse:
    """text/event-stream of ``totals`` events for the session's customer (401 without one)."""
    token = request.cookies.get(COOKIE)
    customer = (await anyio.to_thread.run_sync(_customer_of, request, token)
                if token and len(token) <= 128 else None)
    if customer is None or token is None:
        raise NotAuthenticated("not logged in or the session has expired")
    session_token: str = token
    poll = float(getattr(request.app.state, "live_poll_seconds", LIVE_POLL_SECONDS))
    lifetime = float(getattr(request.app.state, "live_max_seconds", LIVE_MAX_SECONDS))
    recheck = float(getattr(request.app.state, "live_session_check_seconds",
                            SESSION_CHECK_SECONDS))

    async def events() -> AsyncIterator[bytes]:
        started = checked = time.monotonic()
        last: tuple[Any, ...] | None = None
        sent = 0
        yield f"retry: {RETRY_MS}\n\n".encode()
        while time.monotonic() - started < lifetime:
            if await request.is_disconnected():
                return
            if time.monotonic() - checked >= recheck:
                checked = time.monotonic()
                if await anyio.to_thread.run_sync(_customer_of, request, session_token) != customer:
                    yield sse("end", {"reason": "session"}, sent + 1)
                    return
            last, changed = await anyio.to_thread.run_sync(_poll, request, customer, last)
            if changed is not None:
                sent += 1
                yield sse("totals", changed, sent)
            else:
                yield b": keep-alive\n\n"
            await anyio.sleep(poll)
        yield sse("end", {"reason": "lifetime"}, sent + 1)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

