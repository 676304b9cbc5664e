"""The FastAPI application: wiring of settings, pool, clock, routers and error handling."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import ConnectionPool, PoolTimeout
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import ApiError
from api.routes import (
    account_pages,
    alerts,
    billing,
    health,
    ledger,
    live,
    operator_login,
    pages,
    portal,
    quarantine,
    readings,
)
from api.routes import collections as collections_routes
from api.routes import operators as operators_routes
from api.routes import payment_corrections as payment_corrections_routes
from api.routes import read_edits as read_edits_routes
from api.routes import rebill as rebill_routes
from app.settings import Settings

log = logging.getLogger(__name__)

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
    "Referrer-Policy": "same-origin",
}
_LOCATIONS = {"body", "query", "path", "header", "cookie"}


def system_clock() -> datetime:
    return datetime.now(UTC)


def create_app(
    settings: Settings,
    pool: ConnectionPool,
    *,
    clock: Callable[[], datetime] | None = None,
    read_producer: object | None = None,
) -> FastAPI:
    """Build the application around an open pool; the caller owns (opens, closes) the pool.

    `read_producer` (an `ingest.kafka_producer.ReadProducer`) switches HTTP ingest to Kafka.
    """
    app = FastAPI(
        title="Komunalno billing",
        version="0.1.0",
        docs_url=None,  # the interactive docs load scripts from a CDN, which the CSP forbids
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.pool = pool
    app.state.clock = clock or system_clock
    app.state.read_producer = read_producer

    app.include_router(health.router)
    app.include_router(portal.router)
    app.include_router(readings.router)
    app.include_router(billing.router)
    app.include_router(alerts.router)
    app.include_router(ledger.router)  # invoice PDF (portal), ledger reports (operator)
    app.include_router(collections_routes.router)  # collections (operator), portal interest
    app.include_router(live.router)  # live view /uzivo + SSE, operator screens /ops
    app.include_router(operators_routes.router)  # operator accounts, audit
    app.include_router(quarantine.router)  # reads from the future, held until released
    app.include_router(operator_login.router)  # /ops/prijava, /ops/odjava (browser)
    app.include_router(payment_corrections_routes.router)  # reversals, refunds, credit (#5)
    app.include_router(read_edits_routes.router)  # operator read corrections (re-flow)
    app.include_router(rebill_routes.router)  # tariff corrections, rebill queue (#4)
    account_pages.install(app)  # export, password, notifications, problem reports
    pages.install(app)  # HTML portal pages and /static

    app.add_exception_handler(ApiError, _api_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(PoolTimeout, _database_unavailable)
    app.add_exception_handler(psycopg.OperationalError, _database_unavailable)
    app.add_middleware(SecurityHeaders)
    return app


def _detail(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
    return _detail(exc.status_code, exc.detail, exc.headers)


async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return _detail(exc.status_code, str(exc.detail), dict(exc.headers or {}))


async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    status, detail = validation_detail(exc.errors())
    return _detail(status, detail)


async def _database_unavailable(_request: Request, exc: Exception) -> JSONResponse:
    log.warning("database unavailable: %s", exc)
    return _detail(503, "database unavailable, try again later")


def validation_detail(errors: Sequence[Any]) -> tuple[int, str]:
    """Pydantic errors as one readable line naming each field; malformed JSON is a 400."""
    parts: list[str] = []
    for err in errors:
        if err.get("type") == "json_invalid":
            why = (err.get("ctx") or {}).get("error", "")
            return 400, f"malformed JSON{': ' + str(why) if why else ''}"
        loc = [str(x) for x in err.get("loc", ()) if x not in _LOCATIONS]
        parts.append(f"{'.'.join(loc) or 'body'}: {err.get('msg', 'invalid')}")
    return 422, "; ".join(parts) or "invalid request"


class SecurityHeaders:
    """Adds the security headers to every response (errors included), ``no-store`` to API
    answers, and turns any unhandled exception into a JSON 500 without a stack trace."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False
        is_api = str(scope.get("path", "")).startswith("/api/")

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
                if is_api and "cache-control" not in headers:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            response = _detail(500, "internal error")
            await response(scope, receive, send_with_headers)
